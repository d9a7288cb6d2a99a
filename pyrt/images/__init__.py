"""Images: the catalog (catalog.py: Image, ImageCollection), the one ingest path of
load, pull and new images (ingest.py), deletion and prune (deletion.py), archive
formats (OCI layout, docker-archive) and images made from host files."""

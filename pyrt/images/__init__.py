"""Images: the catalog, archive formats (OCI layout, docker-archive) and images made
from host files."""

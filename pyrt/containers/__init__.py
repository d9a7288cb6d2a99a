"""Containers: the model (model.py) and the collection (collection.py), making one
(create.py, its options in options.py), their mounts and volumes, the life of a
detached container (state files, logs, exec), and copying files in and out."""

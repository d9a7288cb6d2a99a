"""Containers: the model and collection, their mounts and volumes, the life of a
detached container (state files, logs, exec), and copying files in and out."""

"""The OCI runtime: config.json to a spawn plan, container state, operations
(pyrt-runtime and the Python API call them)."""

# Bindings of csrc/unpack.c: the streaming OCI layer tar unpacker.

# Bindings of csrc/tarwrite.c and csrc/copy.c: layer tar writer and tree copy.

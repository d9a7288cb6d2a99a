# cython: language_level=3, boundscheck=False, wraparound=False
"""Bindings of pyrt's C core: spawn and wait (csrc/spawn.c), and the layer
operations (unpack, write, copy). Converts Python values to the plain-C specs and
releases the GIL around every blocking call."""

include "_errors.pxi"
include "_spawn.pxi"
include "_unpack.pxi"
include "_layerio.pxi"
include "_monitor.pxi"
include "_pool.pxi"
include "_oci.pxi"
include "_devices.pxi"
include "_reaper.pxi"
include "_relay.pxi"

"""Codecs: the decode plan (``pipeline``) and one numcodecs codec per HDF5 filter, each in its own
module (``registry`` gathers them)."""

"""HDF5 / NetCDF4 scanning: the tree walk and metadata translation (``scanner``), object headers
and layouts (``format``), metadata checksums (``checksums``), chunk indexes (``chunks``,
``index2``, dispatched by ``chunkindex``) and the filter pipeline mapping (``filters``)."""

"""Parquet reference sets in fsspec's ``LazyReferenceMapper`` layout.

The layout (written by ``kerchunk.df.refs_to_dataframe`` and fsspec's ``LazyReferenceMapper``)::

    root/.zmetadata                  {"metadata": {key: JSON object, ...}, "record_size": N}
    root/<field>/refs.<record>.parq  columns path, offset, size, raw

Every zarr metadata key (``.zgroup``, ``x/.zarray``, ...) lives, parsed, in ``.zmetadata``.  Each
array ``<field>`` (a ``<field>/.zarray`` in the metadata) has one row per position of its chunk
grid, in C order: chunk ``i.j.k`` is row ``ravel(i, j, k) % N`` of record ``ravel(i, j, k) // N``
(a scalar array has the one chunk ``<field>/0``).  A row is inline bytes when ``raw`` is not null,
absent when ``path`` is null, a whole file when ``offset == size == 0``, and
``[path, offset, size]`` otherwise: the reading rules of fsspec's ``ReferenceFileSystem``.

:class:`~chunkview.refs.parquet.lazy.LazyParquetReferences` reads such a set lazily (records on demand, an LRU of records);
:func:`~chunkview.refs.parquet.write.write_parquet` writes any reference set in the layout.  pyarrow does the parquet work.
"""

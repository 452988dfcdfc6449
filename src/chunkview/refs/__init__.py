"""Reference sets: the protocol every implementation follows (``protocol``), in memory over the C
index (``memory``), kerchunk dicts and JSON (``kerchunk``), templates and ``gen`` (``templates``),
parquet (``parquet``), the formats (``formats``) and loading any of them (``load``)."""

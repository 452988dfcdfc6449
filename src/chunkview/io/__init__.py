"""Reading bytes: the one URL resolver (``resolve``), the batch fetch of chunk bytes (``fetch``),
remote range reads with retries, multi-range requests and source checks (``remote``), and the
scanner's block cache (``blocks``)."""

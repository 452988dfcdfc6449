"""``chunkview bench``: one module per case (``read``, ``tiny``, ``decode``, ``index``, ``scan``,
``remote``, ``combine``), the data generator (``data``), the plot (``plot``) and the loopback
HTTP server (``server``); ``run`` runs them."""

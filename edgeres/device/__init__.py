"""Facts about the machine edgeres runs on (CPU, packages, GPUs, Jetson board), the doctor that checks it and the
self-test that measures it.

Every fact function returns JSON-able dicts and never raises because something is missing: an absent package or
tool is reported as ``None`` (``null`` in JSON). Heavy packages are imported inside the functions that need them.
"""

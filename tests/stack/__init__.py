"""The real test stack the suite starts itself: OpenBao, SeaweedFS (S3) and moto (KMS).

Everything binds 127.0.0.1 on free ports and is stopped at session end (fixtures use
try/finally; each module also registers an atexit backstop).
"""

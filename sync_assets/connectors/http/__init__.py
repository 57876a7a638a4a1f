"""The HTTP JSON API source (``kind: http``): ``client`` (requests, auth, retries, rate limit),
``pages`` (the pagination styles), ``records`` (JSON records to Arrow batches with a stable
schema) and ``connector`` (the source connector a stream reads through).
"""

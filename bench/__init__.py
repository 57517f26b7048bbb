"""The benchmark harness of issue 6: the hub end to end beside a Celery peer and the broker's
ceiling, in one run on one machine (`make bench`, `python -m bench.run`).
"""

"""The peer: the FastAPI + jsonschema + Celery pipeline a team would otherwise build, run in the
same bench beside the hub so the ratio is measured on the same machine at the same time.
"""

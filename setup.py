"""Packaging that pyproject.toml cannot say by itself: the folders the hub ships with (the demo
configuration, form schemas, mappings and the public standards) are installed as package data
under `hub/bundled_files/`, so an installed hub finds them without this repository (hub/config/bundled.py).
"""

from setuptools import find_packages, setup

BUNDLED = ("config", "schemas", "mappings", "standards")

setup(
    packages=find_packages(include=["hub*", "connectors*", "simulators*"]) + [f"hub.bundled_files.{name}" for name in BUNDLED],
    package_dir={f"hub.bundled_files.{name}": name for name in BUNDLED},
    package_data={
        "hub": ["store/migrations/*.py", "store/migrations/*.mako", "store/migrations/versions/*.py", "py.typed",
                "console/static/govuk/*", "console/static/govuk/assets/*", "console/static/govuk/assets/*/*",
                "console/static/*.js", "console/templates/*.html"],
        "connectors": ["templates/*.txt"],
        "simulators": ["wsdl/*.wsdl"],
        **{f"hub.bundled_files.{name}": ["**/*"] for name in BUNDLED},
    },
    exclude_package_data={f"hub.bundled_files.{name}": ["**/__pycache__/*", "**/*.pyc"] for name in BUNDLED},
)

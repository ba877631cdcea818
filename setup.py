"""The C extension (collector/_speedups.c), built at install time; everything else about
the package is in pyproject.toml.

The extension is optional: where it cannot be built (no compiler, no Python headers), the
install goes on with a warning and collector.speedups uses its pure-Python equivalents.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collector._speedups",
            sources=["collector/_speedups.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ],
)

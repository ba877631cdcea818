"""The C extension (collector/_speedups.c), built at install time; everything else about
the package is in pyproject.toml.

The extension is optional: where it cannot be built (no compiler, no Python headers), the
install goes on with a warning and collector.speedups uses its pure-Python equivalents.
Where libcrypto's headers are found (libssl-dev), it is linked with `-lcrypto` and the
crypto decoder decrypts whole batches in C; without them the rest is built all the same.
"""

import tempfile
from pathlib import Path

from setuptools import Extension, setup


def _has_libcrypto() -> bool:
    """Whether a program calling OpenSSL 3's EVP_CIPHER_fetch compiles and links here."""
    try:
        from setuptools._distutils.ccompiler import new_compiler  # noqa: PLC0415
        from setuptools._distutils.sysconfig import customize_compiler  # noqa: PLC0415

        compiler = new_compiler()
        customize_compiler(compiler)
        with tempfile.TemporaryDirectory() as scratch:
            probe = Path(scratch) / "probe.c"
            probe.write_text("#include <openssl/evp.h>\n#include <openssl/provider.h>\n"
                             "int main(void) { return EVP_CIPHER_fetch(NULL, \"AES-128-CBC\","
                             " NULL) == NULL; }\n")
            objects = compiler.compile([str(probe)], output_dir=scratch)
            compiler.link_executable(objects, "probe", output_dir=scratch,
                                     libraries=["crypto"])
        return True
    except Exception:  # no headers or no compiler: build without it
        return False


_CRYPTO = _has_libcrypto()

setup(
    ext_modules=[
        Extension(
            "collector._speedups",
            sources=["collector/_speedups.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            define_macros=[("HAVE_LIBCRYPTO", "1")] if _CRYPTO else [],
            libraries=["crypto"] if _CRYPTO else [],
            optional=True,
        ),
    ],
)

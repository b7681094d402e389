from setuptools import find_packages, setup

setup(
    name="minidl",
    version="0.1.0",
    description="A from-scratch deep learning library in NumPy, with CuPy on the GPU",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["minidl", "minidl.*"]),
    python_requires=">=3.9",
    install_requires=["numpy>=1.22", "tqdm>=4.60", "matplotlib>=3.5", "threadpoolctl>=3"],
    extras_require={
        "gpu": ["cupy-cuda12x"],
        "distributed": ["mpi4py>=3.1", "mpich"],
        # The tests launch `mpiexec -n 2` (mpich's wheel ships it), so they need the
        # distributed extra too.
        "test": ["pytest>=7", "hypothesis>=6", "mpi4py>=3.1", "mpich"],
        # The documentation site: mkdocs build --strict (see mkdocs.yml).
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26",
                 "mkdocstrings-python>=1.16", "mkdocs-jupyter>=0.25"],
    },
)

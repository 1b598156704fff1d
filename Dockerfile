# distgan on an official Ray GPU image: the image every node of a distgan cluster runs.
#   docker build -t distgan:0.1.0 .
# The Ray version of the base must match the one pinned in constraints.txt (2.60.0).
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu
FROM ${RAY_IMAGE}

# Numeric architectures only: DeepSpeed's op builder cannot parse suffixed ones such as "9.0a".
# A100 (8.0), A10/RTX 30xx (8.6), L4/RTX 40xx (8.9), H100/H200 (9.0).
ENV TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0" \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0

WORKDIR /home/ray/distgan
COPY --chown=ray:users pyproject.toml README.md constraints.txt ./
COPY --chown=ray:users distgan ./distgan
COPY --chown=ray:users configs ./configs

# The pinned set, except the CPU-only torch wheel of the test machines: this image takes the CUDA build
# of the same torch version from the index.
RUN grep -v -e '^torch==' -e '^torch-fidelity==' constraints.txt > /tmp/constraints-gpu.txt \
    && pip install --no-cache-dir torch==2.13.0 --constraint /tmp/constraints-gpu.txt \
    && pip install --no-cache-dir --constraint /tmp/constraints-gpu.txt . \
    && rm /tmp/constraints-gpu.txt

# DeepSpeed compiles its CUDA ops (fused Adam) on first use; set DS_BUILD_OPS=1 on a base image that has
# nvcc to compile them into the image instead.
ARG DS_BUILD_OPS=0
RUN if [ "${DS_BUILD_OPS}" = "1" ]; then DS_BUILD_FUSED_ADAM=1 pip install --no-cache-dir --force-reinstall \
      --no-deps --constraint constraints.txt deepspeed; fi

# The base image's non-root user "ray" (uid 1000), by number so that any host resolves it.
USER 1000
ENTRYPOINT []
CMD ["python", "-m", "distgan", "--help"]

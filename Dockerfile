# leaklab images: the service and the load generator, from source.
#
#   docker build --target service -t leaklab/service .
#   docker build --target loadgen -t leaklab/loadgen .
#   # a "bad release": leak features on by default in the build
#   docker build --target service --build-arg LEAK_FEATURES="leak-unbounded-cache leak-task-leak" -t leaklab/service:bad .
#
# The build stage needs a Rust toolchain image (RUST_IMAGE, default the
# official rust image). Where no registry is reachable, make one locally first
# from Debian's packages and this machine's toolchain:
#
#   ci/docker/make-base-images.sh && docker build --build-arg RUST_IMAGE=leaklab/rust-builder:local ...
#
# The runtime stages are FROM scratch: the binary plus the shared libraries it
# links (glibc, libm, libgcc_s, the loader), found with ldd in the build stage.
# No base image to pull or patch, and the image holds nothing but the program,
# so a container's memory is the program's memory.

ARG RUST_IMAGE=rust:1.95-slim-bookworm

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Space-separated leaklab-service features, e.g. "leak-unbounded-cache".
ARG LEAK_FEATURES=""
RUN features=""; \
    for f in $LEAK_FEATURES; do features="$features,leaklab-service/$f"; done; \
    cargo build --release --locked -p leaklab-service -p loadgen ${features:+--features "${features#,}"} \
    && mkdir -p /out/bin /out/root/tmp /out/root/out \
    && chmod 1777 /out/root/tmp /out/root/out \
    && cp target/release/leaklab-service target/release/loadgen /out/bin/ \
    && for lib in $(ldd target/release/leaklab-service target/release/loadgen | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do \
         cp --parents -L "$lib" /out/root/; \
       done

FROM scratch AS service
COPY --from=build /out/root/ /
COPY --from=build /out/bin/leaklab-service /usr/local/bin/leaklab-service
ENV LEAKLAB_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=2s --timeout=3s --start-period=2s --retries=10 CMD ["/usr/local/bin/leaklab-service", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/leaklab-service"]

FROM scratch AS loadgen
COPY --from=build /out/root/ /
COPY --from=build /out/bin/loadgen /usr/local/bin/loadgen
WORKDIR /out
ENTRYPOINT ["/usr/local/bin/loadgen"]

# syntax=docker/dockerfile:1
# weir in a container: one release build (`cargo build --release --locked`, the command users
# run), stripped, in a slim Debian image with the binary, the CA bundle and the pipelines.
#
#   docker build -t weir .
#   docker run --rm -p 9598:9598 weir                       # the default (demo) pipeline
#   docker run --rm -v "$PWD/my.toml:/etc/weir/weir.toml:ro" weir
#
# The build uses BuildKit's cache mounts (the default builder since Docker Engine 23): the
# crates and compiled dependencies stay in the builder's cache, so a change to weir's own
# sources rebuilds weir only.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The symbols and line tables are left behind: 26 MB instead of about 130 MB.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && strip --strip-all -o /weir target/release/weir

# weir links only glibc (libc, libm), libgcc_s and zlib dynamically (OpenSSL is vendored and
# static): all are in debian:bookworm-slim (libc6, libgcc-s1 and zlib1g are among its
# packages). tests/it/deploy.rs checks this list against `ldd`. Nothing is installed: the CA
# bundle (Kafka TLS looks for it there; the HTTP sinks carry their own roots) comes from the
# build stage's ca-certificates, without the OpenSSL tools and library that package pulls in.
FROM debian:bookworm-slim
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/weir --shell /usr/sbin/nologin weir \
    && install -d -o weir -g weir -m 0750 /var/lib/weir
COPY --from=build /weir /usr/bin/weir
# The default pipeline where the Debian package and the systemd unit keep it, and the
# examples beside it (the compose services run those).
COPY pipelines/default.toml /etc/weir/weir.toml
COPY pipelines /etc/weir/pipelines
USER weir
WORKDIR /var/lib/weir
VOLUME /var/lib/weir
ENV WEIR_API_ADDRESS=0.0.0.0:9598
EXPOSE 9598
# Liveness from weir's API (`/health/live`), with bash's /dev/tcp: the image carries no curl.
# The port is that of WEIR_API_ADDRESS. Readiness (`/health`, 503 while a sink's peer is down)
# is not used: a restart would not bring Elasticsearch back.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${WEIR_API_ADDRESS##*:} && printf 'GET /health/live HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["weir"]
CMD ["run", "--config", "/etc/weir/weir.toml"]

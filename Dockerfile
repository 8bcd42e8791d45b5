# weir in a container: built in a Rust image, run from a slim Debian image with only the
# binary, CA certificates and the example pipelines.
#
#   docker build -t weir .
#   docker run --rm -v "$PWD/pipelines:/etc/weir/pipelines:ro" weir run --config /etc/weir/pipelines/model-server-to-elk.toml

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so that a change to weir's sources does not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src pipelines \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs pipelines/default.toml \
    && cargo build --release --locked \
    && rm -rf src pipelines
COPY src src
COPY pipelines pipelines
COPY layout layout
# The Kibana objects `weir setup` imports are compiled in.
COPY deploy/kibana deploy/kibana
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/weir weir \
    && mkdir -p /var/lib/weir \
    && chown weir /var/lib/weir
COPY --from=build /src/target/release/weir /usr/local/bin/weir
COPY pipelines /etc/weir/pipelines
USER weir
VOLUME /var/lib/weir
ENV WEIR_API_ADDRESS=0.0.0.0:9598
EXPOSE 9598
ENTRYPOINT ["weir"]
CMD ["run"]

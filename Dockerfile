# Portcullis: build with the Rust toolchain, run from a small Debian image as a non-root user.
#   docker build -t portcullis .
#   docker run --rm -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -e PORTCULLIS_ADMIN_TOKEN="$(openssl rand -hex 32)" \
#     -v $PWD/my.yaml:/etc/portcullis/portcullis.yaml:ro portcullis
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The manifest names benches and examples: they must be present for cargo to read it. The
# binary embeds the googleapis protos and the demo's proto (include_str!).
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY protos protos
COPY conf/protos conf/protos
# `dist`: the release profile with link-time optimisation across crates (Cargo.toml).
RUN cargo build --profile dist --locked --bin portcullis \
    && strip target/dist/portcullis

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin portcullis \
    && mkdir -p /run/portcullis /etc/portcullis \
    && chown portcullis /run/portcullis
COPY --from=build /src/target/dist/portcullis /usr/local/bin/portcullis
COPY conf/portcullis.container.yaml /etc/portcullis/portcullis.yaml
USER 10001
EXPOSE 8080 9090
# SIGTERM: unready for drain_delay while still serving, then stop accepting, finish in-flight
# requests within grace_period, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run", "-c", "/etc/portcullis/portcullis.yaml"]

# kontor-node in a container: built on Debian 12 with the packages scripts/setup.sh installs for
# a build, run on debian:12-slim with only the shared libraries it links.
#   docker build -t kontor-node:dev .
#   docker run -p 8080:8080 -v kontor-data:/var/lib/kontor kontor-node:dev
# k8s/ runs this image (README "Kubernetes").

# ---- build
FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libcaf-dev \
      libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev \
      liblmdb-dev \
      libprotobuf-dev protobuf-compiler \
      libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The node only: tests and benchmarks need more packages (catch2, wrk) and run in CI, not here.
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKONTOR_WERROR=ON \
      -DKONTOR_BUILD_TESTS=OFF -DKONTOR_BUILD_BENCH=OFF \
 && cmake --build /build --target kontor-node -j"$(nproc)" \
 && strip --strip-debug -o /kontor-node /build/gateway/kontor-node

# ---- runtime
FROM debian:12-slim
# Exactly the packages scripts/runtime-libs.sh lists for the binary (a deploy test compares the
# two): the owners of the libraries it links, minus libc6, libgcc-s1 and libstdc++6, which
# debian:12-slim has.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libboost-json1.81.0 \
      libboost-program-options1.81.0 \
      libcaf-core0.17 \
      libcaf-io0.17 \
      liblmdb0 \
      libprotobuf32 \
      libssl3 \
      zlib1g \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid (k8s/base runs as 10001 with fsGroup 10001); the data directory is the only
# place the node writes, so the root filesystem can be read-only.
RUN groupadd --system --gid 10001 kontor \
 && useradd --system --uid 10001 --gid kontor --home-dir /var/lib/kontor --no-create-home \
      --shell /usr/sbin/nologin kontor \
 && install -d -o kontor -g kontor -m 0750 /var/lib/kontor
COPY --from=build /kontor-node /usr/local/bin/kontor-node
COPY config/kontor.conf /etc/kontor/kontor.conf
USER 10001:10001
WORKDIR /var/lib/kontor
VOLUME ["/var/lib/kontor"]
EXPOSE 8080 7355
# kontor-node is PID 1 (exec form: no shell between it and the signals). SIGTERM is a graceful
# leave: it hands its shards to the other nodes and exits 0; a node that finds itself on the
# minority side of a partition exits 3 for its supervisor to restart it.
ENTRYPOINT ["/usr/local/bin/kontor-node"]
CMD ["--config=/etc/kontor/kontor.conf", "--data-dir=/var/lib/kontor/data"]

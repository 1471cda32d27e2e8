# One image for the operator and every data-plane role: `tributary operator`, `tributary collector`, ...
#
#   docker build -t tributary:dev .
#
# BASE_IMAGE: any Debian bookworm image with Node.js 20 and npm, and a `node` user of uid 1000.
# The test environment, which cannot pull from a registry, builds one with debootstrap
# (testenv/node/node.sh) and passes it here; NPM_CONFIG_REGISTRY points npm at a mirror.
ARG BASE_IMAGE=node:20-bookworm-slim

FROM ${BASE_IMAGE} AS build
ARG NPM_CONFIG_REGISTRY=https://registry.npmjs.org/
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the only install script is the benchmark's native Reed-Solomon addon (a dev
# dependency, compared against in bench/erasure), which the slim base cannot compile.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts && npm cache clean --force

FROM ${BASE_IMAGE} AS runtime
# ffmpeg: VideoCollector pods cut camera streams into frames with it. tini reaps and forwards
# signals. A base that already carries both (the test environment's) skips the download.
RUN if ! command -v ffmpeg >/dev/null || ! command -v tini >/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ffmpeg ca-certificates tini \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# `tributary` is what the pods the operator spawns run (their command is `tributary <role>`).
# Relaxed WebAssembly SIMD makes the erasure coder about 1.5x faster on Node 20 (bench/erasure).
RUN printf '#!/bin/sh\nexec node --experimental-wasm-relaxed-simd /app/dist/cli.js "$@"\n' > /usr/local/bin/tributary \
 && chmod 755 /usr/local/bin/tributary
ENV NODE_ENV=production
# The `node` user of the base image (uid 1000); the chart's securityContext expects a non-root uid.
USER 1000:1000
ENTRYPOINT ["/usr/bin/tini", "--", "tributary"]
CMD ["--help"]

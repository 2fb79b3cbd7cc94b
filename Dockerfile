# The Strata image where a registry is reachable: `docker build -t strata:0.1.0 .`
# (On machines without a registry, scripts/build-image.sh builds the same image from local files.)
# All roles: `docker run strata:0.1.0 broker|bookie|coordinator|standalone [flags]`.

# The build stage's base. Override only to build without a registry, with a local stand-in of the same
# image (scripts/docker/local-node-base.sh; scripts/check-dockerfile.sh; decision 0055):
#   docker build --build-arg NODE_IMAGE=strata-node-base:local -t strata:dockerfile-check .
ARG NODE_IMAGE=node:20-bookworm-slim

# Build: compile the TypeScript and install the production dependencies.
FROM ${NODE_IMAGE} AS build
# tini for PID 1; a C++ toolchain for native addons without a prebuilt binary (zstd-napi falls back to
# node-gyp when it cannot download one).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
COPY packages/runtime/package.json packages/runtime/
COPY packages/coordinator/package.json packages/coordinator/
COPY packages/bookie/package.json packages/bookie/
COPY packages/broker/package.json packages/broker/
COPY packages/client/package.json packages/client/
COPY packages/cli/package.json packages/cli/
# Production dependencies, kept apart before the dev ones are added.
RUN npm ci --omit=dev --no-audit --no-fund \
 && mkdir -p /prod \
 && cp -a node_modules /prod/ \
 && for p in packages/*/; do if [ -d "$p/node_modules" ]; then mkdir -p "/prod/$p" && cp -a "$p/node_modules" "/prod/$p"; fi; done
RUN npm ci --no-audit --no-fund
COPY tsconfig.base.json tsconfig.json ./
COPY scripts scripts
COPY protos protos
COPY packages packages
RUN npm run build \
 && bash scripts/docker/assemble-rootfs.sh /rootfs /prod

# Runtime: nothing but node, its libraries, tini and the app; no shell, no package manager.
FROM scratch
COPY --from=build /rootfs/ /
ENV NODE_ENV=production
WORKDIR /app
USER 10001:10001
LABEL org.opencontainers.image.title="strata" org.opencontainers.image.source="Dockerfile"
ENTRYPOINT ["/sbin/tini", "--", "/usr/bin/node", "--initial-old-space-size=256", "/app/packages/cli/dist/bin.js"]
CMD ["--help"]

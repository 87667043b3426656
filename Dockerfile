# syntax=docker/dockerfile:1
# CoffeeBuddy runtime image. Build: docker build -t <registry>/coffeebuddy/runtime:<version> .

# Build stage: one bundle, dist/main.cjs, holding the entry and every dependency it needs at start;
# functions-framework with Express (dist/framework.cjs), pg (dist/pg.cjs), the CloudEvents SDK
# (dist/cloudevents.cjs), jose (dist/jose.cjs) and Slack's WebClient (dist/slack-web-api.cjs)
# beside it, loaded only when first needed.
FROM node:24.21.0-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY build ./build
COPY functions ./functions
COPY lib ./lib
RUN npm run build

# Runtime stage: the bundle alone; no node_modules, no npm.
FROM node:24.21.0-bookworm-slim AS runtime
ENV NODE_ENV=production
ENV NODE_COMPILE_CACHE=/app/.compile-cache
# node-fetch 2 (the project's HTTP client) calls url.parse() on a URL it has already normalised
# with WHATWG URL, so DEP0169's concern does not apply; Node 24 would log the warning anyway.
# V8's young generation grows to tens of MB under load by default: capped at 8 MB it keeps peak
# RSS at about 0.64× a functions-framework hello world's at the same throughput (npm run
# bench:memory, BENCHMARKS.md); the old generation is capped well inside the pod's 256 Mi limit.
ENV NODE_OPTIONS="--disable-warning=DEP0169 --max-semi-space-size=8 --max-old-space-size=160"
WORKDIR /app
RUN mkdir .compile-cache && chown 10001:10001 .compile-cache
COPY --from=build /app/dist/main.cjs /app/dist/framework.cjs /app/dist/pg.cjs /app/dist/cloudevents.cjs /app/dist/jose.cjs /app/dist/slack-web-api.cjs ./dist/
# The migration Job's entry (node dist/migrate.cjs) and the SQL files it applies, beside dist/.
COPY --from=build /app/dist/migrate.cjs ./dist/migrate.cjs
# The dead-letter replay (node dist/replay.cjs; docs/operations.md, "Dead letters").
COPY --from=build /app/dist/replay.cjs ./dist/replay.cjs
COPY migrations ./migrations
# A numeric non-root user (Kubernetes checks runAsNonRoot against numbers); it writes only to /tmp.
USER 10001:10001
# Compile once at build time, as this user (Node keys the cache by user), so that every cold start
# reads compiled code; at run time the cache is only read (the root filesystem is read-only).
RUN --mount=type=bind,source=build/warm-compile-cache.js,target=/tmp/warm-compile-cache.js \
  node /tmp/warm-compile-cache.js node dist/main.cjs
EXPOSE 8080
# node itself, not npm, so SIGTERM reaches the process and its drain; Knative's PORT applies.
CMD ["node", "dist/main.cjs"]

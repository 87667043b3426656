# CoffeeBuddy runtime image. Build: docker build -t <registry>/coffeebuddy/runtime:<version> .

# Build stage: compile TypeScript to dist/.
FROM node:24.21.0-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY functions ./functions
COPY lib ./lib
RUN npm run build

# Runtime stage: production modules and dist/ only.
FROM node:24.21.0-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# A numeric non-root user (Kubernetes checks runAsNonRoot against numbers); it writes only to /tmp.
USER 10001:10001
EXPOSE 8080
# node itself, not npm, so SIGTERM reaches the process; no --port, so Knative's PORT applies.
CMD ["node", "node_modules/@google-cloud/functions-framework/build/src/main.js", "--target=coffeebuddy"]

# spend-ingest: one image for every role. The compose file picks the role by command
# (the entry points of the npm scripts, run by node itself so SIGTERM reaches the service):
#   dist/bin/all-in-one.js    (default) migrations, receiver and worker in one process
#   dist/bin/receiver.js      the HTTP receiver (port 8080)
#   dist/bin/usage-worker.js  the usage worker (scale it out: no port)
#   dist/bin/migrate.js       applies pending migrations and exits
#   dist/bin/ops.js <cmd>     the operator CLI

# Build: the TypeScript compiler is a dev dependency, so it runs here and stays here.
FROM node:24-bookworm-slim AS build
WORKDIR /app
# Dependencies first, so that a change to the sources does not reinstall them.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:24-bookworm-slim
# HOST: a container is reached through its network interface, never its loopback.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false
WORKDIR /app
COPY package.json package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Migrations and the price book (config/pricing.yaml refers to
# config/litellm/model_prices_and_context_window.json, which comes along with config/).
COPY drizzle ./drizzle
COPY config ./config
# The console's templates, scripts and styles (served by the receiver at /console).
COPY console ./console

# Files stay root-owned and read-only to the service.
USER node

EXPOSE 8080
# Not `npm start`: npm runs scripts through /bin/sh, which stands between the container's
# SIGTERM and node, so the worker would be killed without finishing the jobs in hand.
# The young generation sized for what the process holds, not from the host's memory (as `npm start`).
CMD ["node", "--max-semi-space-size=16", "dist/bin/all-in-one.js"]

# spend-ingest: one image for every role. The compose file picks the role by command
# (the entry points of the npm scripts, run by node itself so SIGTERM reaches the service):
#   workers/all-in-one.ts  (default) migrations, receiver and worker in one process
#   workers/receiver.ts    the HTTP receiver (port 8080)
#   workers/usage-worker.ts  the usage worker (scale it out: no port)
#   workers/migrate.ts     applies pending migrations and exits
#   workers/ops.ts <cmd>   the operator CLI
#
# The service runs its TypeScript through tsx, which is a production dependency, so
# `npm ci --omit=dev` is enough: drizzle-kit, vitest and typescript stay out of the image
# (migrations run through drizzle-orm's migrator, src/db/migrate.ts).
FROM node:20-bookworm-slim

ENV NODE_ENV=production \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false

WORKDIR /app

# Dependencies first, so that a change to the sources does not reinstall them.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force

# Sources, migrations and the price book (config/pricing.yaml refers to
# config/litellm/model_prices_and_context_window.json, which comes along with config/).
COPY tsconfig.json ./
COPY src ./src
COPY workers ./workers
COPY drizzle ./drizzle
COPY config ./config

# Files stay root-owned and read-only to the service; tsx caches under /tmp, npm under /home/node.
USER node

EXPOSE 8080
# Not `npm start`: npm runs scripts through /bin/sh, which stands between the container's
# SIGTERM and node, so the worker would be killed without finishing the jobs in hand.
CMD ["node", "--import", "tsx", "workers/all-in-one.ts"]

// The atlassian-connect-express contender of the benchmark. bench.py copies this file into a
// temporary folder (mktemp -d) next to the npm-installed atlassian-connect-express, a config.json,
// a descriptor and tenants.json, and runs it with NODE_ENV=production.
//
// Two stores: "redis-v4" (ACE's Redis adapter; bench.py writes the tenants into Redis) and
// "memory-map" (the same adapter class over a Map in each process, loaded from tenants.json).
// ACE's own in-memory store is sequelize on sqlite3 ":memory:", and sqlite3 is only a dev
// dependency of ACE, a native module that cannot be built without network: the Map keeps ACE's
// key layout and its JSON (de)serialisation on every read, and costs less than sqlite would.
//
// Two processes (node cluster), like gunicorn's WEB_CONCURRENCY=2. The webhook route is behind
// addon.authenticate(): HS256 with the tenant's sharedSecret from the store, exp, and the qsh of
// the request (the same checks this project makes, minus the dedupe insert).
"use strict";

const cluster = require("node:cluster");

const WORKERS = Number(process.env.BENCH_NODE_WORKERS || 2);

if (cluster.isPrimary) {
  for (let i = 0; i < WORKERS; i += 1) cluster.fork();
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.process.kill("SIGTERM");
    setTimeout(() => process.exit(0), 500).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  cluster.on("exit", (worker, code, signal) => {
    if (!signal && code !== 0) console.error(`worker ${worker.process.pid} exited with ${code}`);
  });
} else {
  const express = require("express");
  const ace = require("atlassian-connect-express");

  // ACE's own "redis" adapter (lib/store/redis.js) calls util.promisify() on node-redis v4's
  // promise API and never connect()s, so every call fails with ClientClosedError. Keep its class
  // (same key layout "<clientKey>:clientInfo", same JSON (de)serialisation) and only wire the
  // client the way node-redis v4 needs.
  const RedisAdapter = require("atlassian-connect-express/lib/store/redis")();
  const redis = require(require.resolve("redis", { paths: [require.resolve("atlassian-connect-express")] }));

  class ConnectedRedisAdapter extends RedisAdapter {
    constructor(logger, opts) {
      super(logger, opts);
      const client = redis.createClient({ url: opts.url });
      client.on("error", err => logger.error(`redis: ${err.message}`));
      client.connect();
      this.client = {
        get: key => client.get(key),
        set: (key, value) => client.set(key, value),
        del: key => client.del(key),
        keys: pattern => client.keys(pattern),
      };
    }
  }
  ace.store.register("redis-v4", (logger, opts) => new ConnectedRedisAdapter(logger, opts));

  class MapAdapter extends RedisAdapter {
    constructor(logger, opts) {
      super(logger, opts);
      const map = new Map();
      for (const info of require("./tenants.json")) map.set(`${info.clientKey}:clientInfo`, JSON.stringify(info));
      this.client = {
        get: async key => (map.has(key) ? map.get(key) : null),
        set: async (key, value) => map.set(key, value),
        del: async key => map.delete(key),
        keys: async () => [...map.keys()].filter(key => key.endsWith(":clientInfo")),
      };
    }
  }
  ace.store.register("memory-map", (logger, opts) => new MapAdapter(logger, opts));

  const app = express();
  app.use(express.json({ limit: "5mb" }));
  const addon = ace(app);

  app.post("/webhooks/:event", addon.authenticate(), (req, res) => {
    res.status(204).end();
  });

  app.listen(Number(process.env.PORT), "127.0.0.1");
}

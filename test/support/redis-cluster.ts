import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { waitFor } from "./wait.js";
import { freePortWithPartner } from "./ports.js";

const run = promisify(execFile);
// A node silent this long is failed over; short, so a test sees a failover in seconds.
const NODE_TIMEOUT_MS = 1_000;
const CLUSTER_BUS_OFFSET = 10_000;

/**
 * A real Redis Cluster a test or the bench owns: three masters and a replica each, every node
 * its own redis-server on free ports (and its bus at port + 10000), joined by
 * `redis-cli --cluster create`. Nodes can be killed, frozen and woken, as a hostile day would.
 */
export class TestRedisCluster {
  private readonly nodes = new Map<number, ChildProcess>();
  private readonly nodeArgs = new Map<number, string[]>();
  private constructor(private readonly directory: string) {}

  static async start(options: { masters?: number } = {}): Promise<TestRedisCluster> {
    const masters = options.masters ?? 3;
    const directory = mkdtempSync(join(tmpdir(), "spend-ingest-redis-cluster-"));
    const cluster = new TestRedisCluster(directory);
    try {
      for (let n = 0; n < masters * 2; n++) {
        const port = await freePortWithPartner(CLUSTER_BUS_OFFSET);
        const nodeDirectory = join(directory, String(port));
        mkdirSync(nodeDirectory);
        const args = [
          "--port", String(port), "--bind", "127.0.0.1", "--dir", nodeDirectory, "--save", "", "--appendonly", "no",
          "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", String(NODE_TIMEOUT_MS),
          "--maxmemory-policy", "noeviction",
        ];
        cluster.nodeArgs.set(port, args);
        cluster.spawnNode(port);
      }
      await waitFor(async () => (await Promise.all(cluster.ports.map((port) => cluster.ask(port, "ping")))).every((answer) => answer === "PONG"), 30_000);
      await run("redis-cli", ["--cluster", "create", ...cluster.seeds, "--cluster-replicas", "1", "--cluster-yes"]);
      await cluster.waitHealthy();
      return cluster;
    } catch (error) {
      await cluster.remove();
      throw error;
    }
  }

  get ports(): number[] {
    return [...this.nodes.keys()];
  }

  /** Every node as `host:port`, the form REDIS_CLUSTER_NODES takes. */
  get seeds(): string[] {
    return this.ports.map((port) => `127.0.0.1:${port}`);
  }

  get clusterNodes(): { host: string; port: number }[] {
    return this.ports.map((port) => ({ host: "127.0.0.1", port }));
  }

  /**
   * Until every live node says the cluster is ok, and every master has a replica in sync (a
   * replica counts for WAIT and can take over only once it has synchronised).
   */
  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    await waitFor(async () => {
      const live = this.livePorts();
      const answers = await Promise.all(live.map((port) => this.ask(port, "cluster", "info")));
      if (!answers.every((info) => /cluster_state:ok/.test(String(info)) && /cluster_slots_ok:16384/.test(String(info)))) return false;
      const shards = await this.shards();
      if (!shards.every((shard) => shard.replica !== undefined)) return false;
      const links = await Promise.all(shards.map((shard) => this.ask(shard.replica!, "info", "replication")));
      return links.every((info) => /master_link_status:up/.test(String(info)));
    }, timeoutMs);
  }

  /** Each range of slots with its master's port and its first replica's. */
  private async shards(): Promise<{ from: number; to: number; master: number; replica: number | undefined }[]> {
    const reply = (await this.ask(this.livePorts()[0]!, "cluster", "slots")) as [number, number, ...[string, number, string][]][] | undefined;
    return (reply ?? []).map(([from, to, master, replica]) => ({ from, to, master: master![1], replica: replica?.[1] }));
  }

  /** The port of the master that serves `key`'s slot now, and of its replica. */
  async ownerOf(key: string): Promise<{ master: number; replica: number | undefined }> {
    const slot = Number(await this.ask(this.livePorts()[0]!, "cluster", "keyslot", key));
    const shard = (await this.shards()).find(({ from, to }) => slot >= from && slot <= to);
    if (!shard) throw new Error(`no node serves slot ${slot}`);
    return { master: shard.master, replica: shard.replica };
  }

  /** As a crash would: SIGKILL, no shutdown. */
  async kill(port: number): Promise<void> {
    const node = this.nodes.get(port);
    if (!node || node.exitCode !== null || node.signalCode !== null) return;
    const exited = new Promise((resolve) => node.once("exit", resolve));
    node.kill("SIGKILL");
    await exited;
  }

  /** Starts a killed node again on its own cluster config: it rejoins, as a replica if its slots moved on. */
  async restart(port: number): Promise<void> {
    this.spawnNode(port);
    await waitFor(async () => (await this.ask(port, "ping")) === "PONG", 30_000);
    await this.waitHealthy();
    // A replica counts for WAIT only once it has synchronised with its master.
    await waitFor(async () => {
      const info = String(await this.ask(port, "info", "replication"));
      return /role:master/.test(info) || /master_link_status:up/.test(info);
    }, 30_000);
  }

  private spawnNode(port: number): void {
    this.nodes.set(port, spawn("redis-server", this.nodeArgs.get(port)!, { stdio: "ignore" }));
  }

  /** SIGSTOP: the node holds its connections and answers nothing, as a hung host does. */
  freeze(port: number): void {
    this.nodes.get(port)?.kill("SIGSTOP");
  }

  wake(port: number): void {
    this.nodes.get(port)?.kill("SIGCONT");
  }

  async remove(): Promise<void> {
    await Promise.all(
      this.ports.map((port) => {
        this.wake(port);
        return this.kill(port);
      }),
    );
    rmSync(this.directory, { recursive: true, force: true });
  }

  private livePorts(): number[] {
    return this.ports.filter((port) => {
      const node = this.nodes.get(port)!;
      return node.exitCode === null && node.signalCode === null;
    });
  }

  /** One command to one node on a connection of its own, which gives up rather than wait. */
  private async ask(port: number, command: string, ...args: string[]): Promise<unknown> {
    const client = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000, commandTimeout: 2_000 });
    client.on("error", () => {}); // refused until the server listens: the caller asks again
    try {
      await client.connect();
      return await client.call(command, ...args);
    } catch {
      return undefined;
    } finally {
      client.disconnect();
    }
  }
}

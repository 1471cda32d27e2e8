/**
 * How many 720p 30 fps cameras one `tributary video` sustains, sampled at 5 fps into JPEG frames
 * published to the test environment's Kafka, beside ffmpeg alone decoding the same streams to
 * /dev/null in the same run.
 *
 * Camera: a 10 s 1280x720 30 fps H.264 clip (testsrc2, made once here) replayed as a live source
 * (file:// is read at its native rate and looped), so a camera costs no CPU to produce and the
 * machine's cores go to decoding.
 *
 * - reference: N ffmpeg processes `-re -stream_loop -1 -i clip -f null -`; a step is sustained
 *   when every process decodes at ≥ 95 % of real time over the window.
 * - collector: one collector with N sources; a step is sustained when it published ≥ 95 % of
 *   5 × N × window frames with no frame dropped in the window. Capture-to-Kafka is from ffmpeg
 *   handing a frame over to Kafka's acks=all acknowledgement (p50/p99 interpolated in the
 *   collector's histogram buckets).
 * CPU per camera is the cores used (ffmpeg children, plus the collector's own process) over N.
 *
 *   npm run bench -- video     (TRIBUTARY_BENCH_VIDEO_STEPS=1,2,4 to choose the steps)
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { videoConfigSchema } from "../src/dataplane/video/config.js";
import { startVideoCollector } from "../src/dataplane/video/main.js";
import { testEnv } from "../test/support/env.js";
import { createTopics } from "../test/support/kafka.js";

const WARMUP_MS = 6_000;
const WINDOW_MS = 15_000;
const SAMPLE_FPS = 5;
const CLOCK_TICKS = 100;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** CPU seconds (user + system) of this process's ffmpeg children, by /proc. */
function childrenCpuSeconds(): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(stat.indexOf("(") + 1, close);
    const fields = stat.slice(close + 2).split(" ");
    if (comm !== "ffmpeg" || Number(fields[1]) !== process.pid) continue;
    total += (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  }
  return total;
}

const ownCpuSeconds = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
};

function makeClip(ffmpeg: string): string {
  const clip = join(tmpdir(), `tributary-bench-720p30-${process.pid}.mp4`);
  execFileSync(ffmpeg, [
    "-hide_banner",
    "-loglevel",
    "error",
    "-y",
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=1280x720:rate=30",
    "-t",
    "10",
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-g",
    "60",
    "-pix_fmt",
    "yuv420p",
    clip,
  ]);
  return clip;
}

interface StepResult {
  cameras: number;
  sustained: boolean;
  detail: string;
  cpuPerCamera: number;
  p50Ms?: number;
  p99Ms?: number;
}

async function referenceStep(ffmpeg: string, clip: string, cameras: number): Promise<StepResult> {
  const frames: number[] = Array(cameras).fill(0);
  const children: ChildProcess[] = [];
  for (let i = 0; i < cameras; i++) {
    const child = spawn(
      ffmpeg,
      [
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostats",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        clip,
        "-an",
        "-f",
        "null",
        "-",
        "-progress",
        "pipe:1",
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (text: string) => {
      const match = /frame=(\d+)\s*\n(?![\s\S]*frame=)/.exec(text) ?? /frame=(\d+)/.exec(text);
      if (match) frames[i] = Number(match[1]);
    });
    children.push(child);
  }
  await sleep(WARMUP_MS);
  const startFrames = [...frames];
  const startCpu = childrenCpuSeconds();
  const started = Date.now();
  await sleep(WINDOW_MS);
  const seconds = (Date.now() - started) / 1000;
  const cpu = childrenCpuSeconds() - startCpu;
  const speeds = frames.map((count, i) => (count - startFrames[i]!) / seconds / 30);
  for (const child of children) child.kill("SIGKILL");
  await sleep(300);
  const slowest = Math.min(...speeds);
  return {
    cameras,
    sustained: slowest >= 0.95,
    detail: `slowest stream at ${slowest.toFixed(2)}× real time`,
    cpuPerCamera: cpu / seconds / cameras,
  };
}

function histogramQuantile(buckets: { le: number; count: number }[], total: number, q: number): number {
  const rank = q * total;
  let previousLe = 0;
  let previousCount = 0;
  for (const bucket of buckets) {
    if (bucket.count >= rank) {
      if (!Number.isFinite(bucket.le)) return previousLe;
      const inBucket = bucket.count - previousCount;
      return previousLe + ((bucket.le - previousLe) * (rank - previousCount)) / Math.max(1, inBucket);
    }
    previousLe = bucket.le;
    previousCount = bucket.count;
  }
  return previousLe;
}

async function collectorStep(
  ffmpeg: string,
  clip: string,
  cameras: number,
  brokers: string[],
  topic: string,
): Promise<StepResult> {
  const collector = await startVideoCollector(
    videoConfigSchema.parse({
      brokers,
      topic,
      podName: "bench-video-0",
      host: "127.0.0.1",
      port: 0,
      ffmpeg,
      fps: SAMPLE_FPS,
      quality: 80,
      queueFrames: 30,
      sources: JSON.stringify(
        Array.from({ length: cameras }, (_, i) => ({ name: `cam-${i}`, url: `file://${clip}` })),
      ),
    }),
    pino({ level: "silent" }),
  );
  try {
    await sleep(WARMUP_MS);
    const totals = () => {
      const sources = collector.status().sources;
      return {
        published: sources.reduce((sum, s) => sum + s.framesPublished, 0),
        dropped: sources.reduce((sum, s) => sum + s.framesDropped, 0),
      };
    };
    const before = totals();
    collector.metrics.captureToAck.reset();
    const startCpu = childrenCpuSeconds() + ownCpuSeconds();
    const started = Date.now();
    await sleep(WINDOW_MS);
    const seconds = (Date.now() - started) / 1000;
    const cpu = childrenCpuSeconds() + ownCpuSeconds() - startCpu;
    const after = totals();
    const published = after.published - before.published;
    const dropped = after.dropped - before.dropped;
    const expected = SAMPLE_FPS * cameras * seconds;
    const metric = (await collector.metrics.captureToAck.get()).values;
    const buckets = metric
      .filter((v) => v.metricName?.endsWith("_bucket"))
      .map((v) => ({
        le: v.labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(v.labels.le),
        count: v.value,
      }));
    const count = metric.find((v) => v.metricName?.endsWith("_count"))?.value ?? 0;
    return {
      cameras,
      sustained: published >= 0.95 * expected && dropped === 0,
      detail: `${published}/${Math.round(expected)} frames, ${dropped} dropped`,
      cpuPerCamera: cpu / seconds / cameras,
      p50Ms: histogramQuantile(buckets, count, 0.5) * 1000,
      p99Ms: histogramQuantile(buckets, count, 0.99) * 1000,
    };
  } finally {
    await collector.close();
  }
}

export async function run(): Promise<void> {
  const env = testEnv();
  const brokers = process.env.TRIBUTARY_BENCH_KAFKA_BROKERS?.split(",") ?? env.kafkaBrokers;
  const steps = (process.env.TRIBUTARY_BENCH_VIDEO_STEPS ?? "1,2,3,4,6").split(",").map(Number);
  const clip = makeClip(env.ffmpeg);
  const topic = `bench-video-${Date.now().toString(36)}`;
  const dropTopic = await createTopics(brokers, [{ topic, numPartitions: 6 }]);
  const rows: string[] = [];
  let referenceMax = 0;
  let collectorMax = 0;
  let referenceCpu = 0;
  let collectorCpu = 0;
  try {
    for (const cameras of steps) {
      const reference = await referenceStep(env.ffmpeg, clip, cameras);
      const collector = await collectorStep(env.ffmpeg, clip, cameras, brokers, topic);
      if (reference.sustained) referenceMax = cameras;
      if (collector.sustained) collectorMax = cameras;
      if (cameras === 1) {
        referenceCpu = reference.cpuPerCamera;
        collectorCpu = collector.cpuPerCamera;
      }
      rows.push(
        `| ${cameras} | ${collector.sustained ? "yes" : "no"} (${collector.detail}) | ${collector.p50Ms?.toFixed(0)} / ${collector.p99Ms?.toFixed(0)} ms | ${collector.cpuPerCamera.toFixed(2)} | ${reference.sustained ? "yes" : "no"} (${reference.detail}) | ${reference.cpuPerCamera.toFixed(2)} |`,
      );
      console.log(rows.at(-1));
      if (!collector.sustained && !reference.sustained) break;
    }
  } finally {
    await dropTopic();
    rmSync(clip, { force: true });
  }
  console.log(
    "\n| cameras (720p30 H.264) | collector sustains 5 fps JPEG | capture-to-Kafka p50 / p99 | collector cores per camera | ffmpeg alone decodes in real time | ffmpeg alone cores per camera |",
  );
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const row of rows) console.log(row);
  console.log(
    `\ncollector sustains ${collectorMax} camera(s), ffmpeg alone ${referenceMax} (of the steps ${steps.join(", ")}); ratio ${referenceMax > 0 ? (collectorMax / referenceMax).toFixed(2) : "n/a"}; CPU per camera at 1 camera: collector ${collectorCpu.toFixed(2)} cores vs ffmpeg alone ${referenceCpu.toFixed(2)} (${referenceCpu > 0 ? (collectorCpu / referenceCpu).toFixed(2) : "n/a"}×)`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await run();

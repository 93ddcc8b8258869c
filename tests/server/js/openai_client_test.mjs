// qwrun serve through the official `openai` npm client: non-stream and stream calls,
// errors surfaced as the client's typed exceptions. Usage: node openai_client_test.mjs QWRUN ARTIFACT
import { spawn } from "node:child_process";
import assert from "node:assert/strict";
import OpenAI from "openai";

const [qwrun, artifact] = process.argv.slice(2);
const server = spawn(qwrun, ["serve", artifact, "--device", "cpu", "--port", "0",
                             "--api-key", "test-key", "--served-model-name", "qwen-tiny"],
                     { stdio: ["ignore", "ignore", "pipe"] });
let log = "";
const port = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("server did not start:\n" + log)), 60000);
  server.stderr.on("data", (d) => {
    log += d.toString();
    const m = log.match(/on http:\/\/[^:]+:(\d+)/);
    if (m) { clearTimeout(timer); resolve(Number(m[1])); }
  });
  server.on("exit", (code) => reject(new Error(`server exited ${code}:\n${log}`)));
});

const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "test-key", maxRetries: 0 });
try {
  const models = await client.models.list();
  assert.equal(models.data[0].id, "qwen-tiny");

  const chat = await client.chat.completions.create({
    model: "qwen-tiny", messages: [{ role: "user", content: "Say hi" }], max_tokens: 10, temperature: 0,
  });
  assert.equal(chat.object, "chat.completion");
  assert.equal(chat.choices[0].message.role, "assistant");
  assert.ok(["stop", "length"].includes(chat.choices[0].finish_reason));
  assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);

  const stream = await client.chat.completions.create({
    model: "qwen-tiny", messages: [{ role: "user", content: "Say hi" }], max_tokens: 10,
    temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = "", usage = null, finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, chat.choices[0].message.content, "stream equals non-stream (greedy)");
  assert.equal(finish, chat.choices[0].finish_reason);
  assert.equal(usage.completion_tokens, chat.usage.completion_tokens);

  const comp = await client.completions.create({ model: "qwen-tiny", prompt: "Hello", max_tokens: 5, temperature: 0 });
  assert.equal(comp.object, "text_completion");
  assert.equal(typeof comp.choices[0].text, "string");

  await assert.rejects(
    client.chat.completions.create({ model: "qwen-tiny", messages: [{ role: "user", content: "x" }], temperature: 9 }),
    (e) => e instanceof OpenAI.BadRequestError && /temperature/.test(e.message));
  await assert.rejects(
    client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof OpenAI.NotFoundError);
  const badKey = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "wrong", maxRetries: 0 });
  await assert.rejects(badKey.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
  console.log("openai client: all checks passed");
} finally {
  server.kill("SIGTERM");
  const code = await new Promise((r) => server.on("exit", (c) => r(c)));
  assert.equal(code, 0, "SIGTERM drains and exits 0:\n" + log);
}

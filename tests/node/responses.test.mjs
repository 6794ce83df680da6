// The Responses and Conversations APIs through the official `openai` npm package, run by
// tests/test_node_responses.py. OA_RESPONSES (JSON) carries the server, key, and a scripted model per
// test with the text it answers last, so this file holds no expectations of the model's own.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import OpenAI from 'openai';

const setup = JSON.parse(process.env.OA_RESPONSES);
const client = new OpenAI({ baseURL: setup.base_url, apiKey: setup.api_key, maxRetries: 0 });
const { models, texts } = setup;

const WEATHER = {
  type: 'function',
  name: 'get_weather',
  description: 'Weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  strict: false,
};

test('text response, retrieved and deleted', async () => {
  const response = await client.responses.create({ model: models.text, input: 'Say hi', instructions: 'Be brief.' });
  assert.match(response.id, /^resp_/);
  assert.equal(response.object, 'response');
  assert.equal(response.status, 'completed');
  assert.equal(response.output_text, texts.text);
  assert.equal(response.instructions, 'Be brief.');
  assert.ok(response.usage.input_tokens > 0 && response.usage.output_tokens > 0);
  const again = await client.responses.retrieve(response.id);
  assert.equal(again.output_text, texts.text);
  const items = await client.responses.inputItems.list(response.id);
  assert.deepEqual(
    items.data.map((i) => [i.type, i.role]),
    [['message', 'user']],
  );
  await client.responses.delete(response.id);
  await assert.rejects(client.responses.retrieve(response.id), (err) => {
    assert.ok(err instanceof OpenAI.NotFoundError);
    return true;
  });
});

test('stream helper: typed events in sequence and the final response', async () => {
  const stream = client.responses.stream({ model: models.stream, input: 'Stream please' });
  let text = '';
  const types = [];
  const numbers = [];
  stream.on('event', (event) => {
    types.push(event.type);
    numbers.push(event.sequence_number);
  });
  stream.on('response.output_text.delta', (event) => (text += event.delta));
  const final = await stream.finalResponse();
  assert.equal(text, texts.stream);
  assert.equal(final.output_text, texts.stream);
  assert.equal(final.status, 'completed');
  assert.deepEqual(numbers, [...numbers.keys()]);
  assert.deepEqual(types.slice(0, 2), ['response.created', 'response.in_progress']);
  assert.equal(types.at(-1), 'response.completed');
  // At least one delta: pieces of the reply that arrive in one read go out as one.
  assert.ok(types.includes('response.output_text.delta'));
  assert.ok(types.includes('response.output_text.done') && types.includes('response.output_item.done'));
});

test('function call round trip with previous_response_id', async () => {
  const first = await client.responses.create({ model: models.tools, input: 'Weather in Paris?', tools: [WEATHER] });
  assert.equal(first.status, 'completed');
  const call = first.output[0];
  assert.equal(call.type, 'function_call');
  assert.equal(call.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.arguments), { city: 'Paris' });
  const second = await client.responses.create({
    model: models.tools,
    previous_response_id: first.id,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny, 24C' }],
    tools: [WEATHER],
  });
  assert.equal(second.previous_response_id, first.id);
  assert.equal(second.output_text, texts.tools);
});

test('a conversation keeps the turns of its responses', async () => {
  const conversation = await client.conversations.create({
    metadata: { sdk: 'node' },
    items: [{ type: 'message', role: 'user', content: 'My name is Ada.' }],
  });
  assert.match(conversation.id, /^conv_/);
  assert.equal(conversation.object, 'conversation');
  const first = await client.responses.create({ model: models.conversation, conversation: conversation.id, input: 'Hi' });
  assert.equal(first.output_text, texts.conversation_first);
  const second = await client.responses.create({
    model: models.conversation,
    conversation: conversation.id,
    input: 'What is my name?',
  });
  assert.equal(second.output_text, texts.conversation);
  const items = await client.conversations.items.list(conversation.id, { order: 'asc' });
  const roles = items.data.filter((i) => i.type === 'message').map((i) => i.role);
  assert.deepEqual(roles, ['user', 'user', 'assistant', 'user', 'assistant']);
  const updated = await client.conversations.update(conversation.id, { metadata: { sdk: 'node-2' } });
  assert.deepEqual(updated.metadata, { sdk: 'node-2' });
  const deleted = await client.conversations.delete(conversation.id);
  assert.deepEqual(deleted, { id: conversation.id, object: 'conversation.deleted', deleted: true });
});

test('background response: created, streamed to its end, retrieved', async () => {
  const created = await client.responses.create({ model: models.background, input: 'Work', background: true });
  assert.equal(created.background, true);
  assert.ok(['queued', 'in_progress'].includes(created.status));
  // Waits on the response's own stream rather than sleeping between polls.
  const types = [];
  for await (const event of await client.responses.retrieve(created.id, { stream: true })) {
    types.push(event.type);
  }
  assert.equal(types[0], 'response.created');
  assert.equal(types.at(-1), 'response.completed');
  const done = await client.responses.retrieve(created.id);
  assert.equal(done.status, 'completed');
  assert.equal(done.output_text, texts.background);
});

test('compact: a chain summarized into one compaction item, sent back as input', async () => {
  const first = await client.responses.create({ model: models.compact, input: 'Weather in Paris?' });
  const compacted = await client.responses.compact({ model: models.compact, previous_response_id: first.id });
  assert.equal(compacted.object, 'response.compaction');
  assert.deepEqual(
    compacted.output.map((item) => item.type),
    ['message', 'compaction'],
  );
  assert.ok(compacted.usage.total_tokens > 0);
  const after = await client.responses.create({ model: models.compact, input: compacted.output });
  assert.equal(after.output_text, texts.compact);
});

test('bad input is an OpenAI-shaped 400 naming the parameter', async () => {
  await assert.rejects(
    client.responses.create({ model: models.text, input: 'x', previous_response_id: 'resp_x', conversation: 'conv_x' }),
    (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError);
      assert.equal(err.param, 'conversation');
      return true;
    },
  );
});

// Test helpers of @strata/client: a fake of the broker's stream endpoints for unit tests of one
// producer or consumer (tests of the SDK itself; applications test against a real broker).
export { FakeBroker, FakeStream, until } from './fake-broker.js';

// k6 load test for cart-service: the seed's user journey (add an item, add a second item,
// read the cart, stress about 20 % of the time, clear the cart), with per-endpoint tags and
// thresholds. `cargo xtask k6` port-forwards to the cluster and runs it with BASE_URL set;
// against docker compose: `k6 run -e BASE_URL=http://localhost:8080 scripts/k6-load-test.js`.
//
// Environment:
//   BASE_URL        where the service answers (default http://localhost:8080)
//   VUS, DURATION   both set: a constant load of VUS users for DURATION (e.g. 20, 2m);
//                   otherwise the default stages ramp hard enough to push the HPA to max
//   STRESS_RATIO    share of iterations that call /stress (default 0.2)
//   STRESS_CPU      cpu_iterations per stress call (default 500, about 0.5 s of one core)
//
// k6 is AGPL-licensed: the project ships this script only; install k6 from
// https://grafana.com/docs/k6/latest/set-up/install-k6/.

import http from 'k6/http';
import { check, group, sleep } from 'k6';
import { Counter, Rate } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8080').replace(/\/+$/, '');
const STRESS_RATIO = Number(__ENV.STRESS_RATIO || '0.2');
const STRESS_CPU = Number(__ENV.STRESS_CPU || '500');

// Cart operations that succeeded, tagged with the operation.
export const cartOperations = new Counter('cart_operations');
// Requests whose status was not the one the journey expects.
export const errors = new Rate('errors');

// Ramp up, hold at the top long enough for the HPA (15 s metrics, 3 min stabilisation on
// the way down) to reach its maximum, then ramp down so the scale-down can begin.
const RAMP = [
  { duration: '30s', target: 10 },
  { duration: '1m', target: 30 },
  { duration: '2m', target: 60 },
  { duration: '3m', target: 60 },
  { duration: '1m', target: 0 },
];

function scenario() {
  if (__ENV.VUS && __ENV.DURATION) {
    return { executor: 'constant-vus', vus: Number(__ENV.VUS), duration: __ENV.DURATION };
  }
  return { executor: 'ramping-vus', startVUs: 0, stages: RAMP, gracefulRampDown: '30s' };
}

export const options = {
  scenarios: { journey: scenario() },
  thresholds: {
    'http_req_duration{endpoint:cart}': ['p(95)<200'],
    'http_req_duration{endpoint:stress}': ['p(95)<5000'],
    'http_req_duration{endpoint:health}': ['p(95)<50'],
    errors: ['rate<0.01'],
  },
};

const JSON_HEADERS = { 'Content-Type': 'application/json' };

// A saturated /stress answers 429 by design (STRESS_MAX_CONCURRENCY): expected, not an error.
const STRESS_STATUSES = http.expectedStatuses(200, 429);

function record(response, expected, operation) {
  const ok = expected.includes(response.status);
  errors.add(!ok);
  if (ok && operation) {
    cartOperations.add(1, { operation });
  }
  return ok;
}

export default function journey() {
  const user = `k6-user-${__VU}-${__ITER}`;
  const cartUrl = `${BASE_URL}/v1/cart/${user}`;

  group('add items', () => {
    for (const [product, quantity] of [['p-1', 2], ['p-2', 1]]) {
      const res = http.post(cartUrl, JSON.stringify({ product_id: product, quantity }), {
        headers: JSON_HEADERS,
        tags: { endpoint: 'cart', name: 'POST /v1/cart/{user_id}' },
      });
      record(res, [200], 'add_item');
      check(res, { 'add item is 200': (r) => r.status === 200 });
    }
  });

  group('get cart', () => {
    const res = http.get(cartUrl, { tags: { endpoint: 'cart', name: 'GET /v1/cart/{user_id}' } });
    record(res, [200], 'get_cart');
    check(res, {
      'get cart is 200': (r) => r.status === 200,
      'cart holds both items': (r) => r.status === 200 && r.json('items').length === 2,
    });
  });

  if (Math.random() < STRESS_RATIO) {
    group('stress', () => {
      const res = http.post(`${BASE_URL}/stress?cpu_iterations=${STRESS_CPU}`, null, {
        tags: { endpoint: 'stress', name: 'POST /stress' },
        responseCallback: STRESS_STATUSES,
      });
      record(res, [200, 429], null);
      check(res, { 'stress is 200 or 429': (r) => r.status === 200 || r.status === 429 });
    });
  }

  group('health', () => {
    const res = http.get(`${BASE_URL}/healthz`, { tags: { endpoint: 'health', name: 'GET /healthz' } });
    record(res, [200], null);
    check(res, { 'healthz is 200': (r) => r.status === 200 });
  });

  group('clear cart', () => {
    const res = http.del(cartUrl, null, { tags: { endpoint: 'cart', name: 'DELETE /v1/cart/{user_id}' } });
    record(res, [204], 'clear_cart');
    check(res, { 'clear cart is 204': (r) => r.status === 204 });
  });

  sleep(0.5 + Math.random());
}

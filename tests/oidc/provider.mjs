// A real OpenID Provider for the key server's single sign-on tests:
// oidc-provider (the OpenID-certified Node implementation), on loopback,
// with one confidential client (client_secret_basic, PKCE required).
//
// Nobody types at its login page: the test says, through /_test/login,
// which account the next sign-in is, and the interaction completes itself.
// To test the relying party's checks, /_test/tamper makes the next token
// response carry an id_token that is wrong in one way, re-signed with the
// provider's own key (so only that one thing is wrong) or, for "foreign-key",
// signed by another key under the same key id:
//   aud          audience is another client
//   expired      exp and iat an hour and two in the past
//   foreign-key  a second provider's signature
//   replay       the id_token of the previous sign-in (its nonce)
//
// Usage: node provider.mjs --port P --client-id ID --client-secret S --redirect-uri URL
// Prints "ready ISSUER" on stdout once listening.

import http from 'node:http';
import { parseArgs } from 'node:util';
import Provider from 'oidc-provider';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from 'jose';

const { values: a } = parseArgs({
  options: {
    port: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
  },
});
const issuer = `http://127.0.0.1:${a.port}`;

const own = await generateKeyPair('RS256', { extractable: true });
const foreign = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(own.privateKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };

const accounts = new Map();
let next = null; // the account of the next sign-in
let tamper = null; // how to spoil the next id_token
let previousIdToken = null;

const provider = new Provider(issuer, {
  clients: [{
    client_id: a['client-id'],
    client_secret: a['client-secret'],
    redirect_uris: a['redirect-uri'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  cookies: { keys: ['medseal-test-provider'] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const claims = accounts.get(sub);
    if (!claims) return undefined;
    return { accountId: sub, async claims() { return { sub, ...claims }; } };
  },
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email');
    await grant.save();
    return grant;
  },
});

async function spoil(idToken, mode) {
  if (mode === 'replay') return previousIdToken ?? idToken;
  const claims = decodeJwt(idToken);
  const header = decodeProtectedHeader(idToken);
  const now = Math.floor(Date.now() / 1000);
  let key = own.privateKey;
  if (mode === 'aud') claims.aud = 'another-client';
  if (mode === 'expired') { claims.exp = now - 3600; claims.iat = now - 7200; }
  if (mode === 'foreign-key') key = foreign.privateKey;
  return new SignJWT(claims).setProtectedHeader({ alg: header.alg, kid: header.kid }).sign(key);
}

provider.use(async (ctx, nextMw) => {
  await nextMw();
  if (ctx.path === '/token' && ctx.method === 'POST' && ctx.status === 200 && ctx.body?.id_token) {
    const genuine = ctx.body.id_token;
    if (tamper) {
      ctx.body = { ...ctx.body, id_token: await spoil(genuine, tamper) };
      tamper = null;
    }
    previousIdToken = genuine;
  }
});

function json(req) {
  return new Promise((resolve, reject) => {
    let s = '';
    req.on('data', (c) => { s += c; if (s.length > 65536) req.destroy(); });
    req.on('end', () => { try { resolve(JSON.parse(s || '{}')); } catch (e) { reject(e); } });
  });
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  try {
    if (req.url === '/_test/login' && req.method === 'POST') {
      const b = await json(req);
      accounts.set(b.sub, { email: b.email, email_verified: b.email_verified !== false });
      next = b.sub;
      res.writeHead(204).end();
      return;
    }
    if (req.url === '/_test/tamper' && req.method === 'POST') {
      tamper = (await json(req)).mode ?? null;
      res.writeHead(204).end();
      return;
    }
    if (req.url.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'login') {
        if (!next) { res.writeHead(409).end('no account chosen for this sign-in'); return; }
        await provider.interactionFinished(req, res, { login: { accountId: next } }, { mergeWithLastSubmission: false });
      } else {
        await provider.interactionFinished(req, res, { consent: {} }, { mergeWithLastSubmission: true });
      }
      return;
    }
    callback(req, res);
  } catch (e) {
    res.writeHead(500).end(String(e));
  }
});
server.listen(Number(a.port), '127.0.0.1', () => console.log(`ready ${issuer}`));
process.on('SIGTERM', () => process.exit(0));

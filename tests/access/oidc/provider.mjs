// A real OpenID provider (panva/oidc-provider) for sovhub's access tests, on loopback only.
//
// Configuration comes from the environment, written by tests/access/oidc_provider.py:
//   OIDC_PORT        port to listen on (127.0.0.1)
//   OIDC_JWKS_FILE   JSON file {"keys": [private JWKs]}: the test holds the keys, so it can rotate
//                    them (restart with a new set) and sign its own tokens
//   OIDC_CLIENT      JSON client metadata (client_id, client_secret, redirect_uris)
//
// Interactions: instead of a login form, /interaction/:uid signs in the account chosen by the
// last POST /test/next-login {"account": "...", "acr": "..."} (default: "alice", LoA high).
// Consent is granted for the configured client, so the flow is login -> code in one pass.
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const jwks = JSON.parse(fs.readFileSync(process.env.OIDC_JWKS_FILE, 'utf8'));
const client = JSON.parse(process.env.OIDC_CLIENT);

const LOA = 'http://eidas.europa.eu/LoA/';
const accounts = {
  alice: { given_name: 'Olena', family_name: 'Petrenko', birthdate: '1980-04-02' },
  bob: { given_name: 'Bohdan', family_name: 'Koval', birthdate: '1975-11-30' },
  carol: { given_name: 'Carol', family_name: 'Nowak', birthdate: '1990-01-15' },
};
let nextLogin = { account: 'alice', acr: `${LOA}high` };

const provider = new Provider(issuer, {
  clients: [{
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  }],
  jwks,
  acrValues: [`${LOA}low`, `${LOA}substantial`, `${LOA}high`],
  claims: {
    acr: null,
    amr: null,
    openid: ['sub'],
    profile: ['given_name', 'family_name', 'birthdate', 'name'],
  },
  // National eID: the ID token itself carries the person's name (no userinfo round trip).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => true },
  cookies: { keys: ['sovhub-test-cookie-key-not-secret'] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const person = accounts[id];
    if (!person) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: `${person.given_name} ${person.family_name}`, ...person };
      },
    };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile');
    grant.addOIDCClaims(['given_name', 'family_name', 'birthdate', 'name']);
    await grant.save();
    return grant;
  },
  ttl: { AuthorizationCode: 60, Session: 600, Interaction: 600, Grant: 600, IdToken: 300, AccessToken: 300 },
});
provider.proxy = false;

const callback = provider.callback();

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

const server = http.createServer(async (req, res) => {
  try {
    if (req.method === 'POST' && req.url === '/test/next-login') {
      nextLogin = { ...nextLogin, ...JSON.parse(await readBody(req)) };
      res.writeHead(204).end();
      return;
    }
    if (req.method === 'GET' && req.url.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name !== 'login') {
        throw new Error(`unexpected prompt ${details.prompt.name}`);
      }
      await provider.interactionFinished(req, res, {
        login: { accountId: nextLogin.account, acr: nextLogin.acr, amr: ['eid'] },
      }, { mergeWithLastSubmission: false });
      return;
    }
    callback(req, res);
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err && err.stack || err));
  }
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});

// A real OpenID Connect provider (oidc-provider, OpenID Certified) for Conclave's
// end-to-end tests. Usage: PORT=0 REDIRECT_URI=... POST_LOGOUT_URI=... node op.mjs
// Prints "OP ready <issuer>" once listening. A fresh RSA signing key per run; PKCE
// required; `login_hint=<user>` logs that user in at once (HTTP-driven tests), without one
// a sign-in form asks for the username (browser tests); consent is
// granted automatically (a first-party client).
import http from 'node:http';
import crypto from 'node:crypto';
import { Provider } from 'oidc-provider';

const ACCOUNTS = {
  alice: { email: 'alice@example.gov', name: 'Alice Anders', groups: ['conclave-admins', 'staff'] },
  bob: { email: 'bob@example.gov', name: 'Bob Brown', groups: ['staff'] },
  carol: { email: 'carol@example.gov', name: 'Carol Chen', groups: [] },
  erin: { email: 'erin@example.gov', name: 'Erin Eriksen', groups: [] },
};
// The username a subject presents can change (a rename at the IdP): RENAME_<sub>=<new>.
const usernameOf = (sub) => process.env[`RENAME_${sub}`] || sub;

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key-1', use: 'sig', alg: 'RS256' };

const server = http.createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const ISSUER = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(ISSUER, {
    clients: [{
      client_id: 'conclave',
      client_secret: process.env.CLIENT_SECRET || 'conclave-test-secret',
      redirect_uris: process.env.REDIRECT_URI.split(','),
      post_logout_redirect_uris: [process.env.POST_LOGOUT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups', 'userinfo_groups'] },
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['test-cookie-signing-key'] },
    jwks: { keys: [jwk] },
    async findAccount(ctx, sub) {
      const a = ACCOUNTS[sub];
      if (!a) return undefined;
      return {
        accountId: sub,
        // `userinfo_groups` only at the userinfo endpoint, so a test can tell it was read.
        async claims(use) {
          const claims = { sub, email: a.email, email_verified: true, name: a.name, preferred_username: usernameOf(sub), groups: a.groups };
          if (use === 'userinfo') claims.userinfo_groups = ['auditors'];
          return claims;
        },
      };
    },
  });

  async function grantConsent(details) {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const d = details.prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) for (const [ind, s] of Object.entries(d.missingResourceScopes)) grant.addResourceScope(ind, s.join(' '));
    return { consent: { grantId: await grant.save() } };
  }

  // The sign-in page a browser sees (browser tests type a username into it).
  function loginForm(res, uid, problem) {
    res.writeHead(problem ? 401 : 200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html lang="en"><head><title>Test identity provider</title></head><body>
<h1>Test identity provider</h1><p>${problem}</p>
<form method="post" action="/interaction/${uid}"><label for="login">Username</label>
<input id="login" name="login" autocomplete="username"><button type="submit">Sign in</button></form>
</body></html>`);
  }

  const callback = provider.callback();
  server.on('request', async (req, res) => {
    if (!req.url.startsWith('/interaction/')) return callback(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'login') {
        // A browser's form post: the username typed in.
        if (req.method === 'POST') {
          const body = new URLSearchParams(await new Promise((done) => {
            let data = '';
            req.on('data', (chunk) => { data += chunk; });
            req.on('end', () => done(data));
          }));
          const login = body.get('login');
          if (ACCOUNTS[login]) {
            return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
          }
          return loginForm(res, details.uid, 'Unknown user.');
        }
        const hint = details.params.login_hint;
        if (hint && ACCOUNTS[hint]) {
          return provider.interactionFinished(req, res, { login: { accountId: hint } }, { mergeWithLastSubmission: false });
        }
        if (hint) {
          res.writeHead(401, { 'content-type': 'text/plain' });
          return res.end('unknown login_hint');
        }
        return loginForm(res, details.uid, '');
      }
      if (details.prompt.name === 'consent') {
        return provider.interactionFinished(req, res, await grantConsent(details), { mergeWithLastSubmission: true });
      }
      res.writeHead(400); res.end('unknown prompt');
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }); res.end(String(err));
    }
  });
  console.log(`OP ready ${ISSUER}`);
});

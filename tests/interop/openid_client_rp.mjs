// A relying party built on panva's openid-client, driven by tests/interop/test_openid_client.py.
//
// It speaks JSON lines: one object per line on stdout, answers read from stdin. The Python test
// plays the browser in the middle of the code flow, while this process keeps openid-client's own
// state (PKCE verifier, nonce, state) in memory, as a real relying party would in its session.
//
// Environment: ISSUER, MODE ("code", "client_credentials" or "private_key_jwt"), CLIENT_ID and
// CLIENT_SECRET (not for "private_key_jwt", which registers itself), and for "code" also
// REDIRECT_URI and POST_LOGOUT_REDIRECT_URI.
//
// Any failure prints {"error": ..., "code": ..., "stack": ...} as the last line and exits 1.

import * as readline from "node:readline";
import * as client from "openid-client";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
};

const send = (message) => process.stdout.write(JSON.stringify(message) + "\n");

const stdin = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const receive = async () => {
  const { value, done } = await stdin.next();
  if (done) throw new Error("stdin closed before the test answered");
  return JSON.parse(value);
};

// What went wrong, for the test to assert on or show: `code` is the OAuth error of a rejected
// request ("invalid_grant", ...) or else openid-client's own code ("OAUTH_INVALID_RESPONSE", ...),
// and `cause` the detail behind openid-client's generic messages (an Error, a response body or
// the WWW-Authenticate challenges).
const failure = (err) => ({
  error: String(err),
  code: err?.error ?? err?.code ?? null,
  status: err?.status ?? null,
  cause: err?.cause instanceof Error ? String(err.cause) : (err?.cause ?? null),
});

async function discover(authentication, clientId = env("CLIENT_ID")) {
  return client.discovery(
    new URL(env("ISSUER")),
    clientId,
    undefined,
    authentication,
    // The test server is plain http on loopback; openid-client refuses http unless told.
    { execute: [client.allowInsecureRequests] },
  );
}

async function codeFlow() {
  const config = await discover(client.ClientSecretBasic(env("CLIENT_SECRET")));
  const verifier = client.randomPKCECodeVerifier();
  const nonce = client.randomNonce();
  const state = client.randomState();
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: env("REDIRECT_URI"),
    scope: "openid email offline_access",
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    nonce,
    state,
  });
  send({ authorization_url: authorizationUrl.href });

  // The browser signs in and consents; the test sends back where the IdP redirected it.
  const { callback_url: callbackUrl } = await receive();
  // Checks state and the RFC 9207 iss parameter (the metadata says the server sends it), then
  // redeems the code with the verifier and validates the ID token (signature from the JWKS,
  // iss, aud, exp, iat, nonce).
  const tokens = await client.authorizationCodeGrant(config, new URL(callbackUrl), {
    pkceCodeVerifier: verifier,
    expectedNonce: nonce,
    expectedState: state,
    idTokenExpected: true,
  });
  const claims = tokens.claims();

  // Rejects the answer unless its sub is the ID token's (OIDC Core §5.3.2).
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  const introspectionBefore = await client.tokenIntrospection(config, refreshed.access_token);
  await client.tokenRevocation(config, refreshed.refresh_token, {
    token_type_hint: "refresh_token",
  });
  const introspectionAfter = await client.tokenIntrospection(config, refreshed.access_token);
  const refreshTokenAfter = await client.tokenIntrospection(config, refreshed.refresh_token);
  let refreshAfterRevocation = null;
  try {
    await client.refreshTokenGrant(config, refreshed.refresh_token);
  } catch (err) {
    refreshAfterRevocation = failure(err);
  }

  const endSessionUrl = client.buildEndSessionUrl(config, {
    id_token_hint: refreshed.id_token,
    post_logout_redirect_uri: env("POST_LOGOUT_REDIRECT_URI"),
    state: client.randomState(),
  });

  send({
    claims,
    token_type: tokens.token_type,
    scope: tokens.scope,
    has_refresh_token: typeof tokens.refresh_token === "string",
    userinfo,
    refreshed: {
      claims: refreshed.claims() ?? null,
      refresh_token_rotated: refreshed.refresh_token !== tokens.refresh_token,
      access_token_changed: refreshed.access_token !== tokens.access_token,
      id_token: refreshed.id_token ?? null,
    },
    introspection_before: introspectionBefore,
    introspection_after: introspectionAfter,
    refresh_token_introspection_after: refreshTokenAfter,
    refresh_after_revocation: refreshAfterRevocation,
    end_session_url: endSessionUrl.href,
  });
}

async function clientCredentials() {
  const config = await discover(client.ClientSecretPost(env("CLIENT_SECRET")));
  const tokens = await client.clientCredentialsGrant(config, { scope: "api.read" });
  const introspection = await client.tokenIntrospection(config, tokens.access_token);
  send({
    token_type: tokens.token_type,
    scope: tokens.scope,
    expires_in: tokens.expiresIn() ?? null,
    has_refresh_token: "refresh_token" in tokens,
    has_id_token: "id_token" in tokens,
    introspection,
  });
}

// A service without any shared secret (RFC 7523 private_key_jwt): it makes its own key pair,
// the test registers the public half with `idp clients create --jwks-file`, and every token
// request is authenticated by a fresh assertion signed with the private half.
async function privateKeyJwt() {
  const { privateKey, publicKey } = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    false, // the private key cannot be exported: only its public half leaves this process
    ["sign", "verify"],
  );
  const kid = client.randomState();
  const jwk = { ...(await crypto.subtle.exportKey("jwk", publicKey)), kid, alg: "ES256", use: "sig" };
  delete jwk.key_ops;
  delete jwk.ext;
  send({ jwks: { keys: [jwk] } });

  const { client_id: clientId } = await receive();
  const config = await discover(client.PrivateKeyJwt({ key: privateKey, kid }), clientId);
  const tokens = await client.clientCredentialsGrant(config, { scope: "api.read" });
  const introspection = await client.tokenIntrospection(config, tokens.access_token);
  send({ token_type: tokens.token_type, scope: tokens.scope, introspection });
}

const modes = {
  code: codeFlow,
  client_credentials: clientCredentials,
  private_key_jwt: privateKeyJwt,
};

try {
  const mode = modes[env("MODE")];
  if (!mode) throw new Error(`unknown MODE ${process.env.MODE}`);
  await mode();
  process.exitCode = 0;
} catch (err) {
  send({ ...failure(err), stack: err?.stack ?? null });
  process.exitCode = 1;
} finally {
  // Let node exit even if the test keeps our stdin open.
  process.stdin.destroy();
}

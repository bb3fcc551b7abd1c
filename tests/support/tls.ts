/**
 * Test certificates made with `openssl` at test time (README "Security": Redis TLS), shared by the
 * TLS tests of a single Redis and of a Redis Cluster: a CA, a server certificate for
 * 127.0.0.1/localhost (valid for every node on the loopback), a client certificate for mutual
 * TLS, and an unrelated second CA that signed none of them. {@linkcode makePki} writes them into a
 * new temporary directory, which the caller removes; {@linkcode redisTlsArgs} are the
 * `redis-server` arguments that serve the server certificate.
 *
 * @module
 */

/** Paths of the PEM files made by {@linkcode makePki}. */
export interface Pki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed nothing of the above. */
  otherCaCert: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("openssl", { args, cwd: dir, stdin: "null" }).output();
  } catch (err) {
    throw new Error(`openssl is needed for the TLS tests (apt-get install openssl): ${err}`);
  }
  if (!out.success) {
    throw new Error(
      `openssl ${args.join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function makeCa(dir: string, name: string): Promise<void> {
  await Deno.writeTextFile(
    `${dir}/${name}.cnf`,
    [
      "[req]",
      "distinguished_name = dn",
      "prompt = no",
      "[dn]",
      `CN = ${name} test CA`,
      "[v3_ca]",
      "basicConstraints = critical,CA:TRUE",
      "keyUsage = critical,keyCertSign,cRLSign",
      "subjectKeyIdentifier = hash",
      "",
    ].join("\n"),
  );
  await openssl(dir, [
    "req",
    "-x509",
    ...EC_KEY,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-config",
    `${name}.cnf`,
    "-extensions",
    "v3_ca",
  ]);
}

async function makeLeaf(
  dir: string,
  name: string,
  serial: number,
  extensions: string[],
): Promise<void> {
  await openssl(dir, [
    "req",
    "-new",
    ...EC_KEY,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=${name}`,
  ]);
  await Deno.writeTextFile(`${dir}/${name}.ext`, extensions.join("\n") + "\n");
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-set_serial",
    String(serial),
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
    "-out",
    `${name}.crt`,
  ]);
}

/** Makes the CA, the server and client certificates and the unrelated CA in a new temp dir. */
export async function makePki(): Promise<Pki> {
  const dir = await Deno.makeTempDir({ prefix: "rss-tls-" });
  try {
    await Promise.all([makeCa(dir, "ca"), makeCa(dir, "other")]);
    const leaf = ["basicConstraints = CA:FALSE", "authorityKeyIdentifier = keyid"];
    await Promise.all([
      makeLeaf(dir, "server", 2, [
        ...leaf,
        "keyUsage = critical,digitalSignature",
        "extendedKeyUsage = serverAuth",
        "subjectAltName = IP:127.0.0.1,DNS:localhost",
      ]),
      makeLeaf(dir, "client", 3, [
        ...leaf,
        "keyUsage = critical,digitalSignature",
        "extendedKeyUsage = clientAuth",
      ]),
    ]);
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
  return {
    dir,
    caCert: `${dir}/ca.crt`,
    serverCert: `${dir}/server.crt`,
    serverKey: `${dir}/server.key`,
    clientCert: `${dir}/client.crt`,
    clientKey: `${dir}/client.key`,
    otherCaCert: `${dir}/other.crt`,
  };
}

/**
 * `redis-server` arguments that serve `pki`'s server certificate on its TLS port(s), trust `pki`'s
 * CA for client certificates, and ask clients for one (`authClients`: "yes" for mutual TLS,
 * "optional" to verify one when sent, "no" for none).
 */
export function redisTlsArgs(pki: Pki, authClients: "yes" | "optional" | "no"): string[] {
  return [
    "--tls-cert-file",
    pki.serverCert,
    "--tls-key-file",
    pki.serverKey,
    "--tls-ca-cert-file",
    pki.caCert,
    "--tls-auth-clients",
    authClients,
  ];
}

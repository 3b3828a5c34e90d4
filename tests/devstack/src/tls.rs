//! Certificates for the cluster's TLS listener, made with `openssl` when the stack starts: a
//! local CA, a server certificate for `127.0.0.1` signed by it (the brokers' PEM keystore: the
//! unencrypted PKCS#8 key followed by the certificate), and a second, unrelated CA that a test
//! can trust instead to see a wrong CA refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The files under `<stack>/tls/`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the brokers' certificate: what clients set as `ssl.ca.location`.
    pub ca: PathBuf,
    /// A CA that signed nothing here.
    pub wrong_ca: PathBuf,
    /// The brokers' keystore (Kafka's `ssl.keystore.type=PEM`).
    pub keystore: PathBuf,
}

impl TlsFiles {
    pub fn at(stack_dir: &Path) -> Self {
        let dir = stack_dir.join("tls");
        Self {
            ca: dir.join("ca.pem"),
            wrong_ca: dir.join("wrong-ca.pem"),
            keystore: dir.join("keystore.pem"),
        }
    }

    /// Makes every file (again).
    pub fn make(stack_dir: &Path) -> Result<Self> {
        let files = Self::at(stack_dir);
        let dir = stack_dir.join("tls");
        std::fs::create_dir_all(&dir)?;
        let path = |name: &str| dir.join(name).display().to_string();
        for (key, cert, subject) in [
            ("ca.key", "ca.pem", "/CN=standby-events local CA"),
            ("wrong-ca.key", "wrong-ca.pem", "/CN=someone else's CA"),
        ] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "30",
                "-subj",
                subject,
                "-keyout",
                &path(key),
                "-out",
                &path(cert),
            ])?;
        }
        // librdkafka matches the broker's host string against DNS names, rustls an IP address
        // against IP names: the certificate carries 127.0.0.1 as both.
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost\n",
        )?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &path("server.key"),
            "-out",
            &path("server.csr"),
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-days",
            "30",
            "-in",
            &path("server.csr"),
            "-CA",
            &path("ca.pem"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &path("server.ext"),
            "-out",
            &path("server.pem"),
        ])?;
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &path("server.key"),
            "-out",
            &path("server.pk8"),
        ])?;
        let keystore = std::fs::read_to_string(dir.join("server.pk8"))?
            + &std::fs::read_to_string(dir.join("server.pem"))?;
        std::fs::write(&files.keystore, keystore)?;
        Ok(files)
    }
}

fn openssl(args: &[&str]) -> Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (make setup installs it)")?;
    if !output.status.success() {
        bail!(
            "openssl {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

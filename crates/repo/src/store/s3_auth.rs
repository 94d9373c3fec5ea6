//! Where the S3 store's credentials come from: the repository's key files, else the
//! standard AWS credential chain in the daemon's environment — static keys, web identity
//! (IRSA), ECS task credentials, EKS Pod Identity, and the instance metadata service last —
//! in the order AWS SDKs and `object_store` try them, so an operator's IAM setup works
//! as it does for the AWS CLI.
//!
//! Explicit beats ambient: when the repository names key files, nothing from the
//! environment is used, not even `AWS_SESSION_TOKEN`. And only *credential* variables are
//! read from the environment: `AWS_ENDPOINT`, `AWS_REGION`, `AWS_BUCKET`,
//! `AWS_ALLOW_HTTP`... (which `AmazonS3Builder::from_env` would take) are not, so a
//! variable set for another tool on the host cannot silently send backups elsewhere; where
//! backups go is the repository's config alone.
//!
//! Temporary credentials are fetched on first use and refreshed before they expire. When
//! fetching fails, the error says which source was used and what to set; when no source
//! was found at all, it names every source tried and the keys and variables that enable
//! each. Token and key values never appear in an error or a log.

use std::path::Path;
use std::sync::Arc;

use object_store::aws::{
    AmazonS3Builder, AmazonS3ConfigKey as Key, AwsCredential, AwsCredentialProvider,
};
use object_store::CredentialProvider;

use super::StoreError;
use crate::config::OffsiteConfig;

/// Where the instance metadata service is unless `AWS_METADATA_ENDPOINT` says otherwise.
const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";

/// The role session name STS records (CloudTrail shows it) unless `AWS_ROLE_SESSION_NAME`
/// is set: says who assumed the role.
const DEFAULT_SESSION_NAME: &str = "splice-dr";

/// Every source, in the order tried, with what enables it: the text of the error when
/// none is found.
const SOURCES_TRIED: &str = "\
access_key_id_file and secret_access_key_file (and session_token_file) in the repository's \
config; AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN); web identity \
(IRSA): AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (and AWS_ROLE_SESSION_NAME, \
AWS_ENDPOINT_URL_STS); ECS task credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; EKS Pod \
Identity: AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; the \
instance metadata service (an EC2 instance role; AWS_METADATA_ENDPOINT, AWS_IMDSV1_FALLBACK)";

/// What to do about it, after [`SOURCES_TRIED`].
const SET_ONE: &str = "Set one of these for the daemon (systemd EnvironmentFile=, a \
Kubernetes service account for IRSA); see S3 credentials in docs/CONFIG.md";

/// Which source supplies the credentials, once chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The repository's `access_key_id_file` and `secret_access_key_file`.
    ConfigFiles,
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    EnvKeys,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`, exchanged at STS.
    WebIdentity {
        /// The token file (its path, not its content).
        token_file: String,
        /// The role assumed.
        role_arn: String,
        /// The STS endpoint the token is exchanged at.
        sts: String,
    },
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`: an ECS task role.
    EcsTask,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` with a token file: EKS Pod Identity.
    EksPodIdentity {
        /// The agent's URL.
        url: String,
    },
    /// The instance metadata service: nothing else was set.
    InstanceMetadata {
        /// Where it is asked.
        endpoint: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::ConfigFiles => write!(f, "the repository's key files"),
            Source::EnvKeys => write!(f, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            Source::WebIdentity {
                token_file,
                role_arn,
                sts,
            } => write!(
                f,
                "web identity (AWS_WEB_IDENTITY_TOKEN_FILE {token_file}, AWS_ROLE_ARN \
                 {role_arn}, STS {sts})"
            ),
            Source::EcsTask => write!(
                f,
                "ECS task credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"
            ),
            Source::EksPodIdentity { url } => write!(
                f,
                "EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI {url})"
            ),
            Source::InstanceMetadata { endpoint } => {
                write!(f, "the instance metadata service at {endpoint}")
            }
        }
    }
}

/// The chosen source and the builder settings that select it. Holds secrets: no `Debug`.
pub struct Chosen {
    /// Which source.
    pub source: Source,
    settings: Vec<(Key, String)>,
}

/// Reads one variable; empty counts as unset (`Environment=AWS_ROLE_ARN=` in a unit).
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn read_secret(path: &Path, key: &str) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{key} {}: {e}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{key} {} is empty", path.display()));
    }
    Ok(text.to_string())
}

/// Both or neither of two variables; `Some` when both are set.
fn pair(env: Env<'_>, a: &str, b: &str, hint: &str) -> Result<Option<(String, String)>, String> {
    match (env(a), env(b)) {
        (Some(x), Some(y)) => Ok(Some((x, y))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(format!("{a} is set but {b} is not: {hint}")),
        (None, Some(_)) => Err(format!("{b} is set but {a} is not: {hint}")),
    }
}

/// Picks the credential source for `cfg`, reading variables through `env`. Errors name
/// the half-set pair or the unreadable file; nothing is contacted.
pub fn choose<R>(cfg: &OffsiteConfig<R>, env: Env<'_>) -> Result<Chosen, String> {
    let env = &|name: &str| env(name).filter(|v| !v.trim().is_empty());
    match (&cfg.access_key_id_file, &cfg.secret_access_key_file) {
        (Some(k), Some(s)) => {
            let mut settings = vec![
                (Key::AccessKeyId, read_secret(k, "access_key_id_file")?),
                (
                    Key::SecretAccessKey,
                    read_secret(s, "secret_access_key_file")?,
                ),
            ];
            if let Some(t) = &cfg.session_token_file {
                settings.push((Key::Token, read_secret(t, "session_token_file")?));
            }
            return Ok(Chosen {
                source: Source::ConfigFiles,
                settings,
            });
        }
        (None, None) if cfg.session_token_file.is_some() => {
            return Err("session_token_file is set without access_key_id_file and \
                        secret_access_key_file: a session token belongs to a key pair"
                .into());
        }
        (None, None) => {}
        _ => {
            return Err(
                "set both access_key_id_file and secret_access_key_file, or neither".into(),
            );
        }
    }
    if let Some((id, secret)) = pair(
        env,
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "set both, or neither to use another source",
    )? {
        let mut settings = vec![(Key::AccessKeyId, id), (Key::SecretAccessKey, secret)];
        if let Some(t) = env("AWS_SESSION_TOKEN") {
            settings.push((Key::Token, t));
        }
        return Ok(Chosen {
            source: Source::EnvKeys,
            settings,
        });
    }
    if let Some((token_file, role_arn)) = pair(
        env,
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "web identity needs both (an IRSA service account sets them)",
    )? {
        let sts = env("AWS_ENDPOINT_URL_STS")
            .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", cfg.region));
        let session = env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| DEFAULT_SESSION_NAME.into());
        return Ok(Chosen {
            settings: vec![
                (Key::WebIdentityTokenFile, token_file.clone()),
                (Key::RoleArn, role_arn.clone()),
                (Key::RoleSessionName, session),
                (Key::StsEndpoint, sts.clone()),
            ],
            source: Source::WebIdentity {
                token_file,
                role_arn,
                sts,
            },
        });
    }
    if let Some(uri) = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        return Ok(Chosen {
            source: Source::EcsTask,
            settings: vec![(Key::ContainerCredentialsRelativeUri, uri)],
        });
    }
    if let Some(url) = env("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        let Some(token_file) = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") else {
            return Err("AWS_CONTAINER_CREDENTIALS_FULL_URI is set without \
                        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: only EKS Pod Identity (which \
                        sets both) is supported for a full container credentials URI"
                .into());
        };
        return Ok(Chosen {
            settings: vec![
                (Key::ContainerCredentialsFullUri, url.clone()),
                (Key::ContainerAuthorizationTokenFile, token_file),
            ],
            source: Source::EksPodIdentity { url },
        });
    }
    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(format!(
            "no S3 credentials found (the instance metadata service is disabled by \
             AWS_EC2_METADATA_DISABLED); tried: {SOURCES_TRIED}. {SET_ONE}"
        ));
    }
    let endpoint = env("AWS_METADATA_ENDPOINT").unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.into());
    let mut settings = vec![(Key::MetadataEndpoint, endpoint.clone())];
    if let Some(v) = env("AWS_IMDSV1_FALLBACK") {
        settings.push((Key::ImdsV1Fallback, v));
    }
    Ok(Chosen {
        source: Source::InstanceMetadata { endpoint },
        settings,
    })
}

impl Chosen {
    /// `builder` with the chosen credentials; builds it once to take the provider
    /// `object_store` makes of them (web identity, container, instance: fetched and
    /// refreshed there), and wraps that so a failure explains itself. `builder` carries
    /// the client options (timeouts, the repository's `ca_file`) the fetches use too.
    pub fn provider(
        self,
        builder: &AmazonS3Builder,
        repository: &str,
    ) -> Result<AwsCredentialProvider, StoreError> {
        let mut b = builder.clone();
        for (k, v) in self.settings {
            b = b.with_config(k, v);
        }
        let store = b.build().map_err(|e| {
            StoreError::Failed(format!(
                "S3 repository {repository}: credentials from {}: {e}",
                self.source
            ))
        })?;
        Ok(Arc::new(Explained {
            inner: store.credentials().clone(),
            source: self.source,
            repository: repository.to_string(),
        }))
    }
}

/// A credential provider whose failure names its source and what to set.
#[derive(Debug)]
struct Explained {
    inner: AwsCredentialProvider,
    source: Source,
    repository: String,
}

impl Explained {
    fn explain(&self, e: object_store::Error) -> String {
        let repo = &self.repository;
        match &self.source {
            Source::InstanceMetadata { .. } => format!(
                "no S3 credentials found for repository {repo}: nothing was set for any \
                 source, and the last one, {}, did not answer ({e}). Tried: {SOURCES_TRIED}. \
                 {SET_ONE}; off AWS, AWS_EC2_METADATA_DISABLED=true makes this error come at \
                 start-up without the probe",
                self.source
            ),
            source => format!("S3 credentials for repository {repo} from {source} failed: {e}"),
        }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for Explained {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.inner
            .get_credential()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: self.explain(e).into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg() -> OffsiteConfig<()> {
        OffsiteConfig {
            region: "eu-west-1".into(),
            ..OffsiteConfig::s3("s3", "b")
        }
    }

    fn pick(cfg: &OffsiteConfig<()>, vars: &[(&str, &str)]) -> Result<Chosen, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        choose(cfg, &|k| map.get(k).cloned())
    }

    #[test]
    fn key_files_win_over_every_variable() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg();
        for (name, body) in [("id", "AKIDFILE\n"), ("secret", "s\n"), ("token", "t\n")] {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        c.access_key_id_file = Some(dir.path().join("id"));
        c.secret_access_key_file = Some(dir.path().join("secret"));
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("AWS_SESSION_TOKEN", "envtoken"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn"),
        ];
        let chosen = pick(&c, &env).unwrap();
        assert_eq!(chosen.source, Source::ConfigFiles);
        let values: Vec<&str> = chosen.settings.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values,
            ["AKIDFILE", "s"],
            "no session token from the environment"
        );

        c.session_token_file = Some(dir.path().join("token"));
        let chosen = pick(&c, &env).unwrap();
        assert!(chosen.settings.contains(&(Key::Token, "t".into())));
    }

    #[test]
    fn the_chain_goes_in_the_sdk_order() {
        let c = cfg();
        let web = [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/x"),
        ];
        let chosen = pick(&c, &web).unwrap();
        assert_eq!(
            chosen.source,
            Source::WebIdentity {
                token_file: "/var/run/token".into(),
                role_arn: "arn:aws:iam::1:role/r".into(),
                sts: "https://sts.eu-west-1.amazonaws.com".into(),
            },
            "STS in the repository's region"
        );
        assert!(chosen
            .settings
            .contains(&(Key::RoleSessionName, "splice-dr".into())));
        assert_eq!(
            pick(&c, &web[2..]).unwrap().source,
            Source::EcsTask,
            "container credentials after web identity"
        );
        let eks = [
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/eks-token",
            ),
        ];
        assert!(matches!(
            pick(&c, &eks).unwrap().source,
            Source::EksPodIdentity { .. }
        ));
        assert_eq!(
            pick(
                &c,
                &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")]
            )
            .unwrap()
            .source,
            Source::EnvKeys
        );
        assert_eq!(
            pick(&c, &[("AWS_ROLE_ARN", "")]).unwrap().source,
            Source::InstanceMetadata {
                endpoint: DEFAULT_METADATA_ENDPOINT.into()
            },
            "empty counts as unset; instance metadata is the last resort"
        );
    }

    #[test]
    fn half_set_sources_are_refused_by_name() {
        let c = cfg();
        let e = pick(&c, &[("AWS_ACCESS_KEY_ID", "AKID")]).err().unwrap();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY is not"), "{e}");
        let e = pick(&c, &[("AWS_ROLE_ARN", "arn")]).err().unwrap();
        assert!(e.contains("AWS_WEB_IDENTITY_TOKEN_FILE is not"), "{e}");
        let e = pick(&c, &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://x")])
            .err()
            .unwrap();
        assert!(e.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"), "{e}");
        let mut c = cfg();
        c.session_token_file = Some("/t".into());
        let e = pick(&c, &[]).err().unwrap();
        assert!(e.contains("session_token_file"), "{e}");
    }

    #[test]
    fn metadata_disabled_with_nothing_set_fails_at_once_naming_every_source() {
        let e = pick(&cfg(), &[("AWS_EC2_METADATA_DISABLED", "true")])
            .err()
            .unwrap();
        for key in [
            "access_key_id_file",
            "AWS_ACCESS_KEY_ID",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "instance metadata",
        ] {
            assert!(e.contains(key), "{key} missing from: {e}");
        }
    }
}

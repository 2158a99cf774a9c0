//! Building the SDK client from an [`S3Config`] and the standard AWS configuration chain.

use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use crate::S3Config;

/// The region used when neither the configuration nor the AWS chain names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// A ready SDK client and how to name its server in messages.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) client: aws_sdk_s3::Client,
    /// `http://127.0.0.1:9000` for a configured endpoint, `AWS S3 (us-east-1)` otherwise.
    pub(crate) endpoint: String,
}

/// Loads the AWS chain (environment, profiles, roles) with `config`'s settings on top. The
/// chain reads files and the environment but sends nothing: credentials are fetched at the
/// first request.
pub(crate) async fn connect(config: &S3Config) -> Connection {
    // rustls with ring, as elsewhere in the workspace, rather than the SDK's default aws-lc.
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(config.connect_timeout())
                .operation_attempt_timeout(config.attempt_timeout())
                .operation_timeout(config.operation_timeout())
                .build(),
        );
    // The region comes from the configuration, the environment or the profile, never from
    // instance metadata: that lookup only adds a timeout and warnings off EC2, and on
    // EC2 and Lambda `AWS_REGION` is the usual way to say it anyway.
    let region = match config.region() {
        Some(region) => Some(Region::new(region.to_owned())),
        None => {
            RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
                .or_else(ProfileFileRegionProvider::new())
                .region()
                .await
        }
    };
    loader = loader.region(region.unwrap_or_else(|| Region::from_static(DEFAULT_REGION)));
    if let Some(endpoint) = config.endpoint() {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(credentials) = config.credentials() {
        loader = loader.credentials_provider(Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
            None,
            None,
            "flatmachines-s3",
        ));
    }
    let shared = loader.load().await;
    // The S3 client also honours `AWS_ENDPOINT_URL_S3` on its own; it counts as an endpoint
    // here so that path-style addressing follows it.
    let custom_endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
        .ok()
        .filter(|url| !url.is_empty() && config.endpoint().is_none())
        .or_else(|| shared.endpoint_url().map(str::to_owned));
    let path_style = config.path_style().unwrap_or(custom_endpoint.is_some());
    let endpoint = custom_endpoint.unwrap_or_else(|| {
        let region = shared.region().map_or(DEFAULT_REGION, Region::as_ref);
        format!("AWS S3 ({region})")
    });
    let s3_config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(path_style)
        .build();
    Connection {
        client: aws_sdk_s3::Client::from_conf(s3_config),
        endpoint,
    }
}

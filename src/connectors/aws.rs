//! AWS settings shared by the Kinesis connector and `s3://` paths: region, endpoint and
//! credentials from a table's options (Flink's Kinesis option names), else from the
//! environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ... and the rest of the
//! SDK's default chain: profile, web identity, instance metadata).

use crate::sql::catalog::Table;

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// `'aws.region'`.
    pub region: Option<String>,
    /// `'aws.endpoint'`: an endpoint override (a local server, a VPC endpoint).
    pub endpoint: Option<String>,
    /// `'aws.credentials.basic.accesskeyid'`.
    pub access_key: Option<String>,
    /// `'aws.credentials.basic.secretkey'`.
    pub secret_key: Option<String>,
    /// `'aws.credentials.basic.sessiontoken'`.
    pub session_token: Option<String>,
}

impl AwsOptions {
    /// The options of `table`.
    pub fn from_table(table: &Table) -> Self {
        let opt = |k: &str| table.option(k).map(str::to_string);
        Self {
            region: opt("aws.region"),
            endpoint: opt("aws.endpoint"),
            access_key: opt("aws.credentials.basic.accesskeyid"),
            secret_key: opt("aws.credentials.basic.secretkey"),
            session_token: opt("aws.credentials.basic.sessiontoken"),
        }
    }

    /// The SDK configuration: these options over the default chain.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &self.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        } else if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            loader = loader.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(e) = &self.endpoint {
            loader = loader.endpoint_url(e.clone());
        }
        if let (Some(k), Some(s)) = (&self.access_key, &self.secret_key) {
            loader = loader.credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                k.clone(),
                s.clone(),
                self.session_token.clone(),
                None,
                "weir table options",
            ));
        }
        loader.load().await
    }
}

/// One line saying where AWS credentials come from, when an error's text (the SDK's or the
/// object store's, with their whole chain) says they are missing; `None` for other errors.
pub fn credentials_hint(error_text: &str) -> Option<String> {
    let t = error_text.to_ascii_lowercase();
    let missing = t.contains("credential")
        && (t.contains("no credentials")
            || t.contains("not loaded")
            || t.contains("failed to load")
            || t.contains("could not load")
            || t.contains("missing")
            || t.contains("provider")
            || t.contains("not enabled"));
    missing.then(|| {
        "no AWS credentials found: set 'aws.credentials.basic.accesskeyid' and \
         'aws.credentials.basic.secretkey' on the table, or AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn missing_credentials_get_one_line() {
        let sdk = "dispatch failure: other: no credentials in the property bag (CredentialsNotLoaded(CredentialsNotLoaded { source: Some(\"no providers in chain provided credentials\") }))";
        let hint = super::credentials_hint(sdk).unwrap();
        assert!(hint.contains("aws.credentials.basic.accesskeyid"), "{hint}");
        assert!(!hint.contains('\n'));
        assert!(super::credentials_hint("ResourceNotFoundException: stream x").is_none());
    }
}

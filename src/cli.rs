//! Command line: `portcullis [run] -c FILE [-d] [-u]` and `portcullis check -c FILE`.

pub const DEFAULT_CONFIG: &str = "/etc/portcullis/portcullis.yaml";

pub const USAGE: &str = "\
usage:
  portcullis [run] [-c FILE] [-d|--daemon] [-u|--upgrade]   run the gateway
  portcullis check [-c FILE]                               validate a configuration and exit
  portcullis --version | --help

  -c, --config FILE   the Portcullis YAML (default /etc/portcullis/portcullis.yaml)
  -d, --daemon        detach and run in the background (writes server.pid_file)
  -u, --upgrade       take over the listeners of a running instance (graceful upgrade)
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run {
        config: String,
        daemon: bool,
        upgrade: bool,
    },
    Check {
        config: String,
    },
    Version,
    Help,
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().peekable();
    let sub = match it.peek().map(|s| s.as_str()) {
        Some("run") | Some("check") => it.next().map(|s| s.as_str()),
        _ => None,
    };
    let mut config = DEFAULT_CONFIG.to_string();
    let (mut daemon, mut upgrade) = (false, false);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-c" | "--config" | "--conf" => {
                config = it
                    .next()
                    .ok_or_else(|| format!("{arg} needs a file name"))?
                    .clone();
            }
            "-d" | "--daemon" => daemon = true,
            "-u" | "--upgrade" => upgrade = true,
            "-V" | "--version" => return Ok(Command::Version),
            "-h" | "--help" => return Ok(Command::Help),
            other => {
                if let Some(v) = other.strip_prefix("--config=") {
                    config = v.to_string();
                } else {
                    return Err(format!("unknown argument `{other}`"));
                }
            }
        }
    }
    match sub {
        Some("check") if daemon || upgrade => Err("check takes only -c FILE".into()),
        Some("check") => Ok(Command::Check { config }),
        _ => Ok(Command::Run {
            config,
            daemon,
            upgrade,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_forms() {
        assert_eq!(
            parse(&args("-c a.yaml -d")).unwrap(),
            Command::Run {
                config: "a.yaml".into(),
                daemon: true,
                upgrade: false
            }
        );
        assert_eq!(
            parse(&args("run -u --config=b.yaml")).unwrap(),
            Command::Run {
                config: "b.yaml".into(),
                daemon: false,
                upgrade: true
            }
        );
        assert_eq!(
            parse(&args("check -c x")).unwrap(),
            Command::Check { config: "x".into() }
        );
        assert!(parse(&args("check -d")).is_err());
        assert!(parse(&args("-x")).is_err());
        assert!(parse(&args("-c")).is_err());
    }
}

//! `sysmon.os.*` and `alarm.*`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn defaults_are_emqx_s() {
    let config = Config::default();
    let os = &config.sysmon.os;
    assert_eq!(os.cpu_check_interval, Some(Duration::from_secs(60)));
    assert_eq!((os.cpu_high_watermark, os.cpu_low_watermark), (0.80, 0.60));
    assert_eq!(os.mem_check_interval, Some(Duration::from_secs(60)));
    assert_eq!((os.sysmem_high_watermark, os.procmem_high_watermark), (0.70, 0.05));
    let alarm = &config.alarm;
    assert_eq!(alarm.size_limit, 1000);
    assert_eq!(alarm.validity_period, Duration::from_secs(86_400));
    assert_eq!(alarm.check_interval, Some(Duration::from_secs(30)));
    assert_eq!(alarm.connections_high_watermark, usize::MAX);
    assert_eq!(alarm.store_size_high_watermark, u64::MAX);
}

#[test]
fn keys_from_file_and_env() {
    let config = load_str(
        "sysmon-keys",
        "[sysmon.os]\ncpu_check_interval = \"disabled\"\ncpu_high_watermark = \"90%\"\ncpu_low_watermark = 0.5\n\
         mem_check_interval = \"5s\"\nsysmem_high_watermark = 1\nprocmem_high_watermark = \"12.5%\"\n\
         [alarm]\nsize_limit = 10\nvalidity_period = \"1h\"\ncheck_interval = \"500ms\"\n\
         connections_high_watermark = 100\nstore_size_high_watermark = \"1GB\"\n",
        &[("PORTICO_ALARM__SIZE_LIMIT", "20")],
    )
    .unwrap();
    let os = &config.sysmon.os;
    assert_eq!(os.cpu_check_interval, None);
    assert_eq!((os.cpu_high_watermark, os.cpu_low_watermark), (0.9, 0.5));
    assert_eq!(os.mem_check_interval, Some(Duration::from_secs(5)));
    assert_eq!((os.sysmem_high_watermark, os.procmem_high_watermark), (1.0, 0.125));
    let alarm = &config.alarm;
    assert_eq!(alarm.size_limit, 20);
    assert_eq!(alarm.validity_period, Duration::from_secs(3600));
    assert_eq!(alarm.check_interval, Some(Duration::from_millis(500)));
    assert_eq!(alarm.connections_high_watermark, 100);
    assert_eq!(alarm.store_size_high_watermark, 1 << 30);
}

#[test]
fn bad_values_name_their_key() {
    let errors = errors_of(load_str(
        "sysmon-bad",
        "[sysmon.os]\ncpu_check_interval = \"0s\"\ncpu_high_watermark = 1.5\nmem_check_interval = \"soon\"\n\
         sysmem_high_watermark = \"70\"\nprocmem_high_watermark = true\ncpu_watermark = 1\n\
         [alarm]\nsize_limit = 0\nvalidity_period = \"0s\"\nconnections_high_watermark = 0\n\
         store_size_high_watermark = \"big\"\n",
        &[],
    ));
    let text = errors.to_string();
    for key in [
        "sysmon.os.cpu_check_interval",
        "sysmon.os.cpu_high_watermark",
        "sysmon.os.mem_check_interval",
        "sysmon.os.sysmem_high_watermark",
        "sysmon.os.procmem_high_watermark",
        "sysmon.os.cpu_watermark",
        "alarm.size_limit",
        "alarm.validity_period",
        "alarm.connections_high_watermark",
        "alarm.store_size_high_watermark",
    ] {
        assert!(text.contains(key), "{key} not reported in {text}");
    }
    let low = errors_of(load_str(
        "sysmon-low",
        "[sysmon.os]\ncpu_high_watermark = 0.5\ncpu_low_watermark = 0.6\n",
        &[],
    ));
    let text = low.to_string();
    assert!(text.contains("sysmon.os.cpu_low_watermark"), "{text}");
    assert!(text.contains("must not exceed cpu_high_watermark"), "{text}");
}

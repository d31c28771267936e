//! Guest-driven host work is bounded by, and charged to, the guest's limits: a hostile guest
//! inside its limits cannot make the host spend unbounded memory, CPU time or audit volume.
//! Each test drives the real `urlcap run` binary and asserts the host process's own peak
//! memory and CPU time (wait4) and the audit log's size, against the bounds SECURITY.md states.

use crate::support;

use std::path::Path;
use support::{urlcap_measured, Measured};

const PROBE: &str = env!("URLCAP_GUEST_PROBE");

/// `urlcap run` of the probe with `api` granted on a closed loopback port, audit to a file.
async fn run_probe(dir: &Path, extra: &[&str], steps: &[String]) -> (Measured, String) {
    let audit = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let mut args: Vec<String> = [
        "run",
        "--allow",
        "api=http://127.0.0.1:9/",
        "--allow-ip",
        "127.0.0.1",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "--audit".into(),
        audit.display().to_string(),
        PROBE.into(),
        "--".into(),
    ]);
    args.extend(steps.iter().cloned());
    let m = urlcap_measured(args).await;
    let log = std::fs::read_to_string(&audit).unwrap_or_default();
    (m, log)
}

/// `urlcap run` arguments for `guest` with `steps`, under a manifest in `dir` with these
/// `[limits]` and `api` granted on a closed loopback port.
fn run_under(dir: &Path, limits: &str, guest: &str, steps: &str) -> Vec<String> {
    let manifest = dir.join("m.toml");
    std::fs::write(
        &manifest,
        format!(
            "version = 1\n[limits]\n{limits}\n[[authority]]\nname = \"api\"\n\
             origin = \"http://127.0.0.1:9\"\nallow_ips = [\"127.0.0.1/32\"]\n"
        ),
    )
    .unwrap();
    let mut args: Vec<String> = ["run", "--manifest"].map(String::from).to_vec();
    args.push(manifest.display().to_string());
    args.extend([guest.to_string(), "--".into()]);
    args.extend(words(steps));
    args
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// The host's own bounds in these tests: far above what the runs measure (about 50 MiB and
/// well under a second of CPU in a debug build), far below what the unbounded host spent
/// (3.5 GB and 23 s for one chain).
const MAX_HOST_RSS_KIB: u64 = 200 * 1024;
const MAX_HOST_CPU: std::time::Duration = std::time::Duration::from_secs(20);
/// Every audit line stays short whatever the guest sent: its url and detail are cut at 2 KiB
/// each, its lineage is at most 32 levels deep.
const MAX_AUDIT_LINE: usize = 6 * 1024;

fn within_bounds(what: &str, m: &Measured, log: &str, max_log: usize) {
    assert!(
        m.max_rss_kib < MAX_HOST_RSS_KIB,
        "{what}: host peak RSS {} KiB",
        m.max_rss_kib
    );
    assert!(m.cpu < MAX_HOST_CPU, "{what}: host CPU {:?}", m.cpu);
    assert!(
        log.len() <= max_log,
        "{what}: audit log of {} bytes",
        log.len()
    );
    if let Some(line) = log.lines().find(|l| l.len() > MAX_AUDIT_LINE) {
        panic!(
            "{what}: an audit line of {} bytes: {}",
            line.len(),
            &line[..200]
        );
    }
}

/// Chains stop at 32 levels (kept or with their intermediates dropped), a flat flood stops at
/// the 10,000 live derived handles a sandbox tree may keep, and handles a guest dropped but
/// that a descendant keeps alive still count: 400 chains of 32 with only their ends held stop
/// at exactly 10,000 nodes alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derivation_chains_and_floods_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (m, log) = run_probe(
        dir.path(),
        &[],
        &words("chain 100000 api chain 100000 api drop many 20000 api"),
    )
    .await;
    let stdout = support::text(&m.output.stdout);
    assert!(m.output.status.success(), "{m:?}", m = m.output);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "chain 32 handle_limit",
            "chain 32 handle_limit",
            "many 9936 handle_limit"
        ],
        "32 levels deep at most; 10,000 live derived handles in all (64 held by the chains)"
    );
    within_bounds("chains", &m, &log, 16 << 20);
    let derived = log
        .lines()
        .filter(|l| l.contains("\"authority.derived\""))
        .count();
    assert_eq!(
        derived,
        10_000 + 3,
        "one record per handle the guest got, plus three refusals"
    );

    let mut steps = Vec::new();
    for _ in 0..400 {
        steps.extend(words("chain 32 api drop"));
    }
    let (m, log) = run_probe(dir.path(), &[], &steps).await;
    let stdout = support::text(&m.output.stdout);
    let alive: usize = stdout
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(
        alive, 10_000,
        "every node kept alive counts, held or not\n{stdout}"
    );
    assert!(stdout.ends_with("chain 0 handle_limit\n"), "{stdout}");
    within_bounds("kept-alive chains", &m, &log, 16 << 20);
}

/// A derivation naming 20,000 prefixes, or prefixes of 100 KiB, is refused before it is
/// parsed; one at the caps derives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_derivations_are_refused_fast() {
    let dir = tempfile::tempdir().unwrap();
    let (m, log) = run_probe(
        dir.path(),
        &[],
        &words("wide 20000 16 api wide 2 100000 api wide 32 512 api derive t api timeout_ms=18446744073709551615"),
    )
    .await;
    let stdout = support::text(&m.output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[3].starts_with(
            "err invalid_attenuation timeout_ms and expires_in_ms are at most 365 days"
        ),
        "{stdout}"
    );
    assert!(
        lines[0].starts_with("err invalid_attenuation 20000 path prefixes"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("err invalid_attenuation a path prefix is longer"),
        "{stdout}"
    );
    assert_eq!(lines[2], "wide ok");
    within_bounds("wide derivations", &m, &log, 64 << 10);
}

/// A denied 7 KiB path is audited with its URL and detail cut to 2 KiB each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_are_bounded_whatever_the_guest_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("/v2/{}", "p".repeat(7000));
    let steps = vec![
        "derive".into(),
        "v1".into(),
        "api".into(),
        "paths=/v1/".into(),
        "fetch".into(),
        "v1".into(),
        "GET".into(),
        path,
    ];
    let mut steps = steps;
    // Control characters and backslashes escape to more bytes than they take: still bounded.
    steps.extend(["fetch", "v1", "GET"].map(String::from));
    steps.push(format!("/v1/{}", "\u{1}".repeat(4000)));
    steps.extend(["fetch", "v1", "GET"].map(String::from));
    steps.push(format!("/v1/{}", "\\".repeat(4000)));
    let (m, log) = run_probe(dir.path(), &[], &steps).await;
    let stdout = support::text(&m.output.stdout);
    assert!(stdout.contains("err path_not_allowed"), "{stdout}");
    let denied: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "request.denied")
        .collect();
    assert_eq!(denied.len(), 3, "{log}");
    for field in ["url", "detail"] {
        let text = denied[0][field].as_str().unwrap();
        assert!(text.len() < 2100, "{field} is {} bytes", text.len());
        assert!(
            text.ends_with("more bytes]"),
            "{field} says it was cut: {text}"
        );
    }
    within_bounds("long path", &m, &log, 64 << 10);
}

/// The memory-limit outcome comes from the limiter, not from the trap's text: a guest that
/// traps in a function named `memory_grow_limit_exceeded` under a memory limit is reported as
/// trapped, and a real memory bomb as the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_outcome_is_typed_not_read_from_trap_text() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(&manifest, "version = 1\n[limits]\nmemory = \"64MiB\"\n").unwrap();
    let manifest = manifest.display().to_string();
    let (m, _) = run_probe(dir.path(), &["--manifest", &manifest], &words("fakemem")).await;
    let stderr = support::text(&m.output.stderr);
    assert_eq!(m.output.status.code(), Some(134), "{stderr}");
    assert!(stderr.contains("guest trapped"), "{stderr}");
    assert!(!stderr.contains("memory limit"), "{stderr}");
    let (m, _) = run_probe(dir.path(), &["--manifest", &manifest], &words("membomb")).await;
    let stderr = support::text(&m.output.stderr);
    assert_eq!(m.output.status.code(), Some(134), "{stderr}");
    assert!(
        stderr.contains("guest stopped: memory limit of 64"),
        "{stderr}"
    );
}

/// A component wrapping one core module of `functions` functions, each declaring `locals`
/// i64 locals and shuffling them around, exporting nothing (so not a command).
fn component_with_functions(functions: u32, locals: u32) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Component, Function, FunctionSection, Instruction, Module, ModuleSection,
        TypeSection, ValType,
    };
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    for _ in 0..functions {
        funcs.function(0);
        let mut f = Function::new([(locals, ValType::I64)]);
        for i in 0..locals.min(2_000) {
            f.instruction(&Instruction::LocalGet(i));
            f.instruction(&Instruction::LocalSet((i + 1) % locals));
        }
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// A component whose one module holds one function of `locals` i64 locals and `body` repeated
/// `times` (nothing else: it is refused before anything would validate or link it).
fn component_with_body(
    locals: u32,
    times: u32,
    body: &[wasm_encoder::Instruction<'static>],
) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Component, Function, FunctionSection, Instruction, Module, ModuleSection,
        TypeSection, ValType,
    };
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    let mut f = Function::new([(locals, ValType::I64)]);
    for _ in 0..times {
        for i in body {
            f.instruction(i);
        }
    }
    f.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&f);
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// A component whose one module holds `types` function types of `params` i32 parameters and
/// one function nesting `nesting` empty blocks.
fn component_with_shape(types: u32, params: usize, nesting: u32) -> Vec<u8> {
    use wasm_encoder::{
        BlockType, CodeSection, Component, Function, FunctionSection, Instruction, Module,
        ModuleSection, TypeSection, ValType,
    };
    let mut type_section = TypeSection::new();
    type_section.ty().function([], []);
    for _ in 0..types {
        type_section.ty().function(vec![ValType::I32; params], []);
    }
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    let mut f = Function::new([]);
    for _ in 0..nesting {
        f.instruction(&Instruction::Block(BlockType::Empty));
    }
    for _ in 0..nesting {
        f.instruction(&Instruction::End);
    }
    f.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&f);
    let mut module = Module::new();
    module.section(&type_section).section(&funcs).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// Hand each of `components` to `sandbox.run` from a probe, under a 64 MiB, 30 s sandbox.
async fn spawn_each(dir: &Path, components: &[(&str, Vec<u8>)]) -> (Measured, String, String) {
    let guests = dir.join("g");
    std::fs::create_dir_all(&guests).unwrap();
    let mut steps = Vec::new();
    for (name, bytes) in components {
        std::fs::write(guests.join(name), bytes).unwrap();
        steps.extend(words(&format!("spawn /g/{name} - 1 child")));
    }
    let manifest = dir.join("m.toml");
    std::fs::write(
        &manifest,
        "version = 1\n[limits]\nmemory = \"64MiB\"\ntimeout = \"30s\"\n",
    )
    .unwrap();
    let (manifest, dirs) = (
        manifest.display().to_string(),
        format!("{}::/g", guests.display()),
    );
    let (m, log) = run_probe(dir, &["--manifest", &manifest, "--dir", &dirs], &steps).await;
    let stdout = support::text(&m.output.stdout);
    (m, log, stdout)
}

/// What used to cost 52 s of wall time, 103 s of CPU and 440 MB (six functions of 45,000
/// locals) is refused before compiling, and so are a component that is not a command and one
/// over the size cap: the host spends well under a second of CPU on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_supplied_components_are_vetted_before_compiling() {
    use wasm_encoder::Instruction as I;
    let dir = tempfile::tempdir().unwrap();
    let mut oversize = wasm_encoder::Component::new();
    oversize.section(&wasm_encoder::CustomSection {
        name: "padding".into(),
        data: vec![0u8; 17 << 20].into(),
    });
    let components = [
        ("locals.wasm", component_with_functions(6, 45_000)),
        ("notacommand.wasm", component_with_functions(400, 1_000)),
        ("oversize.wasm", oversize.finish()),
        // What a second hostile review compiled into gigabytes and minutes (nesting: memory
        // quadratic in depth; types: a trampoline per wide signature).
        ("nesting.wasm", component_with_shape(0, 0, 600)),
        ("widetype.wasm", component_with_shape(1, 1_000, 1)),
        ("manytypes.wasm", component_with_shape(3_000, 30, 1)),
        // What a third review compiled for minutes: many blocks over many locals, and
        // thousands of indirect calls in one function.
        (
            "ifs.wasm",
            component_with_body(
                4_096,
                1_100,
                &[
                    I::LocalGet(0),
                    I::I32WrapI64,
                    I::If(wasm_encoder::BlockType::Empty),
                    I::End,
                ],
            ),
        ),
        (
            "brtable.wasm",
            component_with_body(
                4_096,
                1,
                &[
                    I::Loop(wasm_encoder::BlockType::Empty),
                    I::I32Const(0),
                    I::BrTable(vec![0; 8_192].into(), 0),
                    I::End,
                ],
            ),
        ),
        (
            "callind.wasm",
            component_with_body(
                0,
                1_100,
                &[
                    I::I32Const(0),
                    I::CallIndirect {
                        type_index: 0,
                        table_index: 0,
                    },
                ],
            ),
        ),
        // What a fourth review compiled into 2 GB from 458 KB: components nested in components
        // (memory quadratic in depth), and components of very many modules.
        ("deep.wasm", nested_components(5_000)),
        ("modules.wasm", {
            let mut many = wasm_encoder::Component::new();
            for _ in 0..300 {
                many.section(&wasm_encoder::ModuleSection(&wasm_encoder::Module::new()));
            }
            many.finish()
        }),
    ];
    let (m, log, stdout) = spawn_each(dir.path(), &components).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 11, "{stdout}");
    assert!(
        lines[9].contains("components and modules nest more than 16 deep"),
        "{stdout}"
    );
    assert!(
        lines[10].contains("more than 256 components and modules"),
        "{stdout}"
    );
    assert!(
        lines[6].contains("has 4096 locals across 1100 blocks"),
        "{stdout}"
    );
    assert!(lines[7].contains("has 4096 locals across"), "{stdout}");
    assert!(
        lines[8].contains("has 1100 call_indirect instructions"),
        "{stdout}"
    );
    assert!(
        lines[3].contains("nests blocks more than 512 deep"),
        "{stdout}"
    );
    assert!(
        lines[4].contains("a function type has 1000 parameters and results"),
        "{stdout}"
    );
    assert!(
        lines[5].contains("parameters and results in all"),
        "{stdout}"
    );
    assert!(
        lines[0].starts_with("err invalid_component function 1 declares more than 4096 locals"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("err invalid_component the component does not export wasi:cli/run"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("err invalid_component the component is 1782"),
        "{stdout}"
    );
    within_bounds("vetted components", &m, &log, 64 << 10);
    assert!(
        m.cpu < std::time::Duration::from_secs(8),
        "refused before compiling: {:?} of CPU",
        m.cpu
    );
    let refusals = log.matches("\"invalid_component\"").count();
    assert_eq!(refusals, 11, "{log}");
}

/// A component holding a component holding … `depth` levels of empty components.
fn nested_components(depth: u32) -> Vec<u8> {
    const HEADER: [u8; 8] = [0, b'a', b's', b'm', 0x0d, 0, 1, 0];
    let mut component = HEADER.to_vec();
    for _ in 0..depth {
        let mut outer = HEADER.to_vec();
        outer.push(4); // a component section
        support::leb128(component.len(), &mut outer);
        outer.extend_from_slice(&component);
        component = outer;
    }
    component
}

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => files_under(&e.path()),
                _ => 1,
            })
            .sum()
    })
}

/// A guest-supplied component is never written to the host's on-disk compilation cache
/// (the host's own guest is: that is what makes the next `urlcap run` start fast).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_supplied_components_never_reach_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let guests = Path::new(PROBE).parent().unwrap().display().to_string();
    let mut counts = Vec::new();
    for (i, steps) in ["list", "spawn /g/hello.wasm - 1 hello"].iter().enumerate() {
        let cache = dir.path().join(format!("cache{i}"));
        let envs = vec![
            ("XDG_CACHE_HOME".to_string(), cache.display().to_string()),
            ("HOME".to_string(), dir.path().display().to_string()),
        ];
        let mut args: Vec<String> = words(&format!("run --dir {guests}::/g {PROBE} --"));
        args.extend(words(steps));
        let m = support::urlcap_measured_env(args, envs).await;
        let stdout = support::text(&m.output.stdout);
        assert!(
            m.output.status.success(),
            "{stdout} {}",
            support::text(&m.output.stderr)
        );
        if i == 1 {
            assert!(stdout.starts_with("spawned 0"), "{stdout}");
        }
        counts.push(files_under(&cache));
    }
    assert!(counts[0] > 0, "the host's own guest is cached on disk");
    assert_eq!(
        counts[1], counts[0],
        "the nested component added nothing to the disk cache"
    );
}

/// A compile that outlasts the sandbox's wall clock ends the spawn with a clear reason (or
/// the sandbox itself at its limit); the host does not wait for the compile to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_is_charged_to_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(&manifest, "version = 1\n[limits]\ntimeout = \"200ms\"\n").unwrap();
    let guests = Path::new(PROBE).parent().unwrap().display().to_string();
    let args = words(&format!(
        "run --manifest {} --audit {}/a.jsonl --dir {guests}::/g {PROBE} -- spawn /g/probe.wasm - 2 probe list",
        manifest.display(),
        dir.path().display()
    ));
    let m = urlcap_measured(args).await;
    let stdout = support::text(&m.output.stdout);
    let refused = stdout.starts_with("err nesting_limit the component did not compile within");
    assert!(
        refused || m.output.status.code() == Some(124),
        "{stdout} {:?}",
        m.output.status
    );
    let log = std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap();
    assert!(
        log.lines().last().unwrap().contains("\"sandbox.exited\""),
        "{log}"
    );
}

/// One spawn passes at most 256 handles (the same handle under 300 names is refused before
/// any is derived), so a child's table and its `sandbox.spawned` record stay small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_passes_a_bounded_number_of_handles() {
    let dir = tempfile::tempdir().unwrap();
    let guests = Path::new(PROBE).parent().unwrap().display().to_string();
    let names: Vec<String> = (0..300).map(|i| format!("api:n{i}")).collect();
    let steps = words(&format!("spawn /g/hello.wasm {} 1 hello", names.join(",")));
    let dirs = format!("{guests}::/g");
    let (m, log) = run_probe(dir.path(), &["--dir", &dirs], &steps).await;
    let stdout = support::text(&m.output.stdout);
    assert!(
        stdout.starts_with(
            "err invalid_attenuation 300 handles passed; a nested sandbox takes at most 256"
        ),
        "{stdout}"
    );
    within_bounds("many preopens", &m, &log, 64 << 10);
}

/// An audit reader that stops reading (`urlcap run … 2>&1 | stuck`) cannot hold a guest past
/// its wall clock or make the host queue records without bound: the guest that floods denials
/// waits for the sink (an await its 2 s limit ends), the log counts as failed once its sink
/// has taken nothing for 10 s, and `urlcap run` exits 74 instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_audit_reader_cannot_hold_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = run_under(
        dir.path(),
        "timeout = \"2s\"",
        PROBE,
        "deny 100000000 api /admin",
    );
    let m = support::urlcap_measured_stderr_unread(args.clone()).await;
    assert!(
        m.wall < std::time::Duration::from_secs(90),
        "still running after {:?} (killed)",
        m.wall
    );
    assert_eq!(
        m.output.status.code(),
        Some(urlcap::host::EXIT_AUDIT),
        "{:?}",
        m.output.status
    );
    let shown = String::from_utf8_lossy(&m.output.stderr);
    eprintln!(
        "wall {:?}, peak RSS {} KiB, CPU {:?}",
        m.wall, m.max_rss_kib, m.cpu
    );
    assert!(
        shown.lines().next().is_some_and(|l| l.starts_with('{')),
        "the pipe holds whole records: {}",
        &shown[..shown.len().min(300)]
    );
    assert!(
        m.max_rss_kib < MAX_HOST_RSS_KIB,
        "host peak RSS {} KiB",
        m.max_rss_kib
    );

    // With --audit-fail-open the guest stops waiting for the stalled sink, ends on its wall
    // clock (124), and what could not be queued is counted, not held.
    args.insert(1, "--audit-fail-open".into());
    let m = support::urlcap_measured_stderr_unread(args).await;
    assert!(m.wall < std::time::Duration::from_secs(90), "{:?}", m.wall);
    assert_eq!(m.output.status.code(), Some(124), "{:?}", m.output.status);
    assert!(m.max_rss_kib < MAX_HOST_RSS_KIB, "{} KiB", m.max_rss_kib);
}

/// What a wasi:http guest makes the host hold outside its memory — header maps, and bodies of
/// requests it never sends — is bounded by its memory limit: each resource holds at most
/// 64 KiB, and a sandbox may hold at most its memory limit / 64 KiB of them. A guest hoarding
/// requests (each with a 60 KiB header and a body filled as far as the host takes it) under
/// 64 MiB is stopped with a clear message; before these bounds it took the host past 3 GB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_held_wasi_http_state_is_bounded_by_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let args = run_under(
        dir.path(),
        "timeout = \"20s\"\nmemory = \"64MiB\"",
        env!("URLCAP_GUEST_WHTTP"),
        "hoard 100000",
    );
    let m = urlcap_measured(args).await;
    let err = String::from_utf8_lossy(&m.output.stderr);
    assert_eq!(m.output.status.code(), Some(134), "{err}");
    assert!(
        err.contains("held more resources at once (streams, requests, header maps) than the host keeps for its memory limit (1024)"),
        "{err}"
    );
    assert!(
        m.max_rss_kib < MAX_HOST_RSS_KIB,
        "host peak RSS {} KiB",
        m.max_rss_kib
    );
}

/// The guest's stdout with a reader that stopped reading cannot hold the run either (wasmtime's
/// inherited stream would block inside the host call, forever): the guest waits for room in
/// an await its 2 s wall clock ends, and `urlcap run` exits 124 soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stdout_reader_cannot_hold_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = run_under(dir.path(), "timeout = \"2s\"", PROBE, "spew 100000000");
    args.insert(1, "--audit".into());
    args.insert(2, dir.path().join("a.jsonl").display().to_string());
    let m = support::urlcap_measured_stdout_unread(args).await;
    assert!(m.wall < std::time::Duration::from_secs(90), "{:?}", m.wall);
    assert_eq!(m.output.status.code(), Some(124), "{:?}", m.output.status);
    assert!(m.max_rss_kib < MAX_HOST_RSS_KIB, "{} KiB", m.max_rss_kib);
    let log = std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap();
    assert!(log.contains("wall-clock limit of 2s reached"), "{log}");
}

/// One host call does a bounded amount of work whatever the guest asks: a 32 MiB write to
/// stderr (past the stream's 64 KiB permit) traps at once instead of being framed for
/// seconds, and random bytes come at most 1 MiB a call. Denying a derivation when the
/// sandbox's resource table is full is a refusal (`handle_limit`), not a trap, and records no
/// handle the guest never got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_call_does_bounded_work() {
    let dir = tempfile::tempdir().unwrap();
    let m = urlcap_measured(run_under(
        dir.path(),
        "timeout = \"60s\"\nmemory = \"64MiB\"",
        PROBE,
        "bigwrite 32",
    ))
    .await;
    let err = String::from_utf8_lossy(&m.output.stderr);
    assert_eq!(m.output.status.code(), Some(134), "{err}");
    assert!(
        err.contains("a write of 33554432 bytes exceeds the stream's permit"),
        "{err}"
    );
    assert!(m.cpu < std::time::Duration::from_secs(10), "{:?}", m.cpu);

    // A guest that skips check-write cannot skip the wait for room either.
    let m = urlcap_measured(run_under(
        dir.path(),
        "timeout = \"60s\"",
        PROBE,
        "cwonce 2000",
    ))
    .await;
    let err = String::from_utf8_lossy(&m.output.stderr);
    assert_eq!(m.output.status.code(), Some(134), "{err}");
    assert!(
        err.contains("a write of 65536 bytes exceeds the stream's permit of 0"),
        "{err}"
    );

    let m = urlcap_measured(run_under(
        dir.path(),
        "timeout = \"60s\"",
        PROBE,
        "random 0 random 1",
    ))
    .await;
    let out = support::text(&m.output.stdout);
    assert!(out.starts_with("random 0\n"), "{out}");
    assert_eq!(m.output.status.code(), Some(134), "{out}");
    assert!(m.cpu < std::time::Duration::from_secs(10), "{:?}", m.cpu);

    let dir2 = tempfile::tempdir().unwrap();
    let mut args = run_under(dir2.path(), "memory = \"4MiB\"", PROBE, "many 300 api");
    args.insert(1, "--audit".into());
    args.insert(2, dir2.path().join("a.jsonl").display().to_string());
    let m = urlcap_measured(args).await;
    let out = support::text(&m.output.stdout);
    assert_eq!(
        m.output.status.code(),
        Some(0),
        "{out} {}",
        support::text(&m.output.stderr)
    );
    assert!(out.contains("handle_limit"), "{out}");
    let log = std::fs::read_to_string(dir2.path().join("a.jsonl")).unwrap();
    let derived = log
        .lines()
        .filter(|l| l.contains("\"authority.derived\"") && l.contains("\"reason\":null"))
        .count();
    let kept: usize = out
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(derived, kept, "one record per handle the guest got: {out}");
}

/// Compiling a component a guest hands to `sandbox.run` is charged to the memory that guest
/// has left: `urlcap run` compiles it in a process of its own whose address space may grow by
/// no more than that. The probe (340 KB, several MiB to compile) spawning itself is refused
/// under a 4 MiB limit, naming the memory, and runs under 32 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_is_charged_to_the_spawning_sandboxs_memory() {
    let dir = tempfile::tempdir().unwrap();
    let guests = Path::new(PROBE).parent().unwrap().display().to_string();
    for (memory, refused) in [("4MiB", true), ("32MiB", false)] {
        let mut args = run_under(
            dir.path(),
            &format!("memory = \"{memory}\"\ntimeout = \"30s\""),
            PROBE,
            "spawn /g/probe.wasm - 1 probe list",
        );
        args.splice(1..1, ["--dir".to_string(), format!("{guests}::/g")]);
        let m = urlcap_measured(args).await;
        let stdout = support::text(&m.output.stdout);
        if refused {
            assert!(
                stdout
                    .starts_with("err nesting_limit compiling the component needed more than the")
                    && stdout.contains("of memory this sandbox has left"),
                "{memory}: {stdout}"
            );
        } else {
            assert!(stdout.starts_with("spawned 0"), "{memory}: {stdout}");
        }
        assert_eq!(m.output.status.code(), Some(0), "{memory}: {stdout}");
        within_bounds(memory, &m, "", 0);
    }
}

/// A compile process dies with its host: `urlcap run` killed (SIGKILL, which it cannot
/// handle) while a guest's component compiles for seconds leaves no compile running on.
#[test]
fn a_compile_process_dies_with_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let heavy = support::probe_with_heavy_module(2_000, 1_000, 2);
    std::fs::write(dir.path().join("heavy.wasm"), &heavy).unwrap();
    let mut host = std::process::Command::new(env!("CARGO_BIN_EXE_urlcap"))
        .args(["run", "--audit", "/dev/null", "--dir"])
        .arg(format!("{}::/g", dir.path().display()))
        .args([
            PROBE,
            "--",
            "spawn",
            "/g/heavy.wasm",
            "-",
            "1",
            "probe",
            "list",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    // A compile process that has read the whole component (killed before, it would end at
    // once on a short read).
    let compile = loop {
        let read_all = |pid: u32| {
            let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: "))
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|read| read >= heavy.len())
        };
        if let Some(&pid) = support::compile_processes(host.id())
            .iter()
            .find(|&&pid| read_all(pid))
        {
            break pid;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no compile process started"
        );
        assert!(host.try_wait().unwrap().is_none(), "the run ended first");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    host.kill().unwrap();
    host.wait().unwrap();
    let killed = std::time::Instant::now();
    // Gone, or a zombie waiting for init to reap it: either way no longer compiling.
    while support::process_state(compile).is_some_and(|(_, state, _)| state != "Z") {
        assert!(
            killed.elapsed() < std::time::Duration::from_secs(3),
            "the compile process outlived its host (it compiles for seconds)"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A child is charged what its component takes loaded — code and tables — as the compile
/// process measured it, not only its code: the probe with 100,000 more exports (1 MB of wasm,
/// little code, but more than 10 MB of export tables once loaded) spawned under 128 MiB
/// leaves its child under 118 MiB (charging its code alone would leave about 124), and the
/// same bytes again (from the cache) are charged the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_is_charged_what_its_component_takes_loaded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("exports.wasm"),
        support::probe_with_exports(100_000),
    )
    .unwrap();
    let mut args = run_under(
        dir.path(),
        "memory = \"128MiB\"\ntimeout = \"60s\"",
        PROBE,
        "spawn /g/exports.wasm - 2 probe membomb spawn /g/exports.wasm - 2 probe membomb",
    );
    args.splice(
        1..1,
        ["--dir".to_string(), format!("{}::/g", dir.path().display())],
    );
    let m = urlcap_measured(args).await;
    let stdout = support::text(&m.output.stdout);
    let limits: Vec<f64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("spawned 134 guest stopped: memory limit of "))
        .filter_map(|l| l.strip_suffix(" MiB exceeded"))
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(limits.len(), 2, "{stdout}");
    assert!(
        limits[0] < 118.0,
        "the child kept {} MiB: {stdout}",
        limits[0]
    );
    assert_eq!(limits[0], limits[1], "cached spawns are charged the same");
    within_bounds("loaded charge", &m, "", 0);
}

//! What a guest-supplied component (`sandbox.run`) must pass before the host compiles it.
//!
//! Compiling is the one piece of host work a guest can ask for that wasmtime cannot stop
//! once started, and whose cost depends on the code, not only on its size: a few functions
//! that declare tens of thousands of locals took the register allocator minutes of CPU. So
//! the bytes are read once with wasmparser (cheap, linear in their size) and refused, before
//! any compile, when they are not a command component or when a function is larger, or
//! declares more locals, than the caps below. What passes compiles in time proportional to its
//! size, which is itself capped; that time is still charged to the sandbox's wall clock.

use wasmparser::{Encoding, Parser, Payload};

/// Largest component a guest may hand to `sandbox.run`.
pub(crate) const MAX_CHILD_COMPONENT_BYTES: usize = 16 << 20;
/// Most locals one function of a guest-supplied component may declare.
pub(crate) const MAX_FUNCTION_LOCALS: u64 = 4_096;
/// Largest function body of a guest-supplied component, in bytes.
pub(crate) const MAX_FUNCTION_BODY_BYTES: usize = 256 << 10;
/// Deepest nesting of blocks, loops and ifs in one function: the compiler's SSA construction
/// costs memory quadratic in it (a few hundred levels took gigabytes).
pub(crate) const MAX_BLOCK_NESTING: u32 = 512;
/// Most parameters plus results of one core function or block type.
pub(crate) const MAX_SIGNATURE_VALUES: usize = 32;
/// Most parameters and results over all core function types (each gets compiled trampolines).
pub(crate) const MAX_TOTAL_SIGNATURE_VALUES: usize = 64 << 10;
/// Most functions over all core modules of a guest-supplied component.
pub(crate) const MAX_FUNCTIONS: usize = 20_000;
/// Most locals × control-flow blocks in one function. Cranelift's SSA construction does work
/// for each local live across each block, so this product, not the body's size, is what a
/// function costs to compile: 4,096 locals across 4,000 if/else blocks (a 24 KB body) took
/// over a second of CPU, twice the body four times as long.
pub(crate) const MAX_LOCALS_TIMES_BLOCKS: u64 = 1 << 22;
/// Most locals × control-flow blocks over the whole component.
pub(crate) const MAX_TOTAL_LOCALS_TIMES_BLOCKS: u64 = 1 << 25;
/// Most `call_indirect`s over the whole component (each compiles to a table bounds and a
/// signature check: about a millisecond of CPU apiece in a debug build).
pub(crate) const MAX_CALL_INDIRECTS: u64 = 1 << 14;
/// Most `call_indirect`s in one function (their cost grows faster than their number there).
pub(crate) const MAX_FUNCTION_CALL_INDIRECTS: u64 = 1 << 10;
/// Deepest nesting of components and modules inside a guest-supplied component: compiling
/// costs memory quadratic in it (20,000 levels of empty components, 458 KB, took 2 GB).
pub(crate) const MAX_COMPONENT_NESTING: u32 = 16;
/// Most components and core modules in a guest-supplied component, at every depth.
pub(crate) const MAX_COMPONENTS_AND_MODULES: u32 = 256;
/// Most targets of one `br_table`.
pub(crate) const MAX_BR_TABLE_TARGETS: u32 = 1 << 16;

/// The first check, before anything else is spent on a component: its size.
pub(crate) fn check_size(len: usize) -> Result<(), String> {
    if len > MAX_CHILD_COMPONENT_BYTES {
        return Err(format!(
            "the component is {len} bytes; a nested sandbox takes at most {MAX_CHILD_COMPONENT_BYTES}"
        ));
    }
    Ok(())
}

/// Check `bytes` before compiling them: a component, of bounded size, exporting
/// `wasi:cli/run`, whose every function is within the caps. The error says what is wrong.
pub(crate) fn vet_child_component(bytes: &[u8]) -> Result<(), String> {
    check_size(bytes.len())?;
    let (mut depth, mut parts) = (0u32, 0u32);
    let mut exports_run = false;
    let mut function = 0usize;
    let mut signature_values = 0usize;
    let (mut total_cost, mut call_indirects) = (0u64, 0u64);
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("not a valid component: {}", e.message()))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    return Err("a core module, not a component; build for wasm32-wasip2".into());
                }
                depth += 1;
                parts += 1;
                if depth > MAX_COMPONENT_NESTING {
                    return Err(format!("components and modules nest more than {MAX_COMPONENT_NESTING} deep; too deep for a nested sandbox"));
                }
                if parts > MAX_COMPONENTS_AND_MODULES {
                    return Err(format!("more than {MAX_COMPONENTS_AND_MODULES} components and modules; too many for a nested sandbox"));
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(exports) if depth == 1 => {
                for export in exports {
                    let export =
                        export.map_err(|e| format!("not a valid component: {}", e.message()))?;
                    exports_run |= export.name.name.starts_with("wasi:cli/run@0.2.");
                }
            }
            Payload::TypeSection(types) => {
                for group in types {
                    let group =
                        group.map_err(|e| format!("not a valid component: {}", e.message()))?;
                    for sub in group.types() {
                        if let wasmparser::CompositeInnerType::Func(f) = &sub.composite_type.inner {
                            let values = f.params().len() + f.results().len();
                            if values > MAX_SIGNATURE_VALUES {
                                return Err(format!("a function type has {values} parameters and results; at most {MAX_SIGNATURE_VALUES} in a nested sandbox"));
                            }
                            signature_values += values;
                            if signature_values > MAX_TOTAL_SIGNATURE_VALUES {
                                return Err(format!("the function types have more than {MAX_TOTAL_SIGNATURE_VALUES} parameters and results in all; too many for a nested sandbox"));
                            }
                        }
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                function += 1;
                if function > MAX_FUNCTIONS {
                    return Err(format!(
                        "more than {MAX_FUNCTIONS} functions; too many for a nested sandbox"
                    ));
                }
                let size = body.range().len();
                if size > MAX_FUNCTION_BODY_BYTES {
                    return Err(format!(
                        "function {function} has a body of {size} bytes; at most {MAX_FUNCTION_BODY_BYTES} in a nested sandbox"
                    ));
                }
                let mut locals = 0u64;
                let reader = body
                    .get_locals_reader()
                    .map_err(|e| format!("not a valid component: {}", e.message()))?;
                for local in reader {
                    let (count, _) =
                        local.map_err(|e| format!("not a valid component: {}", e.message()))?;
                    locals += u64::from(count);
                    if locals > MAX_FUNCTION_LOCALS {
                        return Err(format!(
                            "function {function} declares more than {MAX_FUNCTION_LOCALS} locals, the most a nested sandbox's functions may"
                        ));
                    }
                }
                let shape = check_operators(function, &body)?;
                let cost = locals.saturating_mul(shape.blocks);
                if cost > MAX_LOCALS_TIMES_BLOCKS {
                    return Err(format!("function {function} has {locals} locals across {} blocks; a nested sandbox's functions may have at most {MAX_LOCALS_TIMES_BLOCKS} locals × blocks (it would take long to compile)", shape.blocks));
                }
                total_cost += cost;
                if total_cost > MAX_TOTAL_LOCALS_TIMES_BLOCKS {
                    return Err(format!("the functions have more than {MAX_TOTAL_LOCALS_TIMES_BLOCKS} locals × blocks in all; too costly to compile for a nested sandbox"));
                }
                if shape.call_indirects > MAX_FUNCTION_CALL_INDIRECTS {
                    return Err(format!("function {function} has {} call_indirect instructions; at most {MAX_FUNCTION_CALL_INDIRECTS} in a nested sandbox's functions", shape.call_indirects));
                }
                call_indirects += shape.call_indirects;
                if call_indirects > MAX_CALL_INDIRECTS {
                    return Err(format!("more than {MAX_CALL_INDIRECTS} call_indirect instructions; too costly to compile for a nested sandbox"));
                }
            }
            _ => {}
        }
    }
    if !exports_run {
        return Err("the component does not export wasi:cli/run@0.2 (it is not a command)".into());
    }
    Ok(())
}

/// One function's block nesting and `br_table` sizes, read operator by operator.
/// What of a function body's shape its compile cost depends on.
struct Shape {
    /// Control-flow blocks and edges: `block`, `loop`, `if`, `else`, `try`, every `br_table`
    /// target, and the blocks a `br_if`, `call_indirect`, `call_ref` or table access splits
    /// off once compiled.
    blocks: u64,
    call_indirects: u64,
}

fn check_operators(function: usize, body: &wasmparser::FunctionBody<'_>) -> Result<Shape, String> {
    use wasmparser::Operator;
    let invalid =
        |e: wasmparser::BinaryReaderError| format!("not a valid component: {}", e.message());
    let mut reader = body.get_operators_reader().map_err(invalid)?;
    let mut depth = 0u32;
    let mut shape = Shape {
        blocks: 0,
        call_indirects: 0,
    };
    while !reader.eof() {
        match reader.read().map_err(invalid)? {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Try { .. }
            | Operator::TryTable { .. } => {
                shape.blocks += 1;
                depth += 1;
                if depth > MAX_BLOCK_NESTING {
                    return Err(format!("function {function} nests blocks more than {MAX_BLOCK_NESTING} deep, the most a nested sandbox's functions may"));
                }
            }
            Operator::End => depth = depth.saturating_sub(1),
            Operator::Else => shape.blocks += 1,
            // Each also splits the function into more blocks once compiled (a bounds and a
            // signature check; a branch's fall-through).
            Operator::CallIndirect { .. } | Operator::ReturnCallIndirect { .. } => {
                shape.call_indirects += 1;
                shape.blocks += 1;
            }
            Operator::BrIf { .. }
            | Operator::TableGet { .. }
            | Operator::TableSet { .. }
            | Operator::TableGrow { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCallRef { .. }
            | Operator::BrOnNull { .. }
            | Operator::BrOnNonNull { .. } => shape.blocks += 1,
            Operator::BrTable { targets } => {
                if targets.len() > MAX_BR_TABLE_TARGETS {
                    return Err(format!("function {function} has a br_table of {} targets; at most {MAX_BR_TABLE_TARGETS} in a nested sandbox", targets.len()));
                }
                // Every target is an edge that carries the function's live locals.
                shape.blocks += u64::from(targets.len()) + 1;
            }
            _ => {}
        }
    }
    Ok(shape)
}

/** The Courses context's aggregate. */
export * from "./course.js";
